"""Plot functions: each takes data and matplotlib axes and returns the figure (Agg backend, never shown)."""
from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# a home (or $MPLCONFIGDIR) that cannot be written: matplotlib works from a temporary folder, and its logger, which
# nothing configures, printed two lines of warnings saying so on the stderr of every command that plots
_MATPLOTLIB_LOG = logging.getLogger("matplotlib")
_level = _MATPLOTLIB_LOG.level
_MATPLOTLIB_LOG.setLevel(logging.ERROR)
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.colors
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
finally:
    _MATPLOTLIB_LOG.setLevel(_level)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from studies.records import value_text  # noqa: E402


def new_axes(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.5)) -> np.ndarray:
    """A grid of axes (always a 2-D array) on a new figure of ``size`` inches per panel."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    fig.set_layout_engine("constrained")
    return axes


def _thin_log_minor_ticks(fig: Figure) -> None:
    """Minor ticks of every log axis at 2 and 5 times a power of ten, not at each of 2..9: labelled as before where
    an axis spans few decades, and a third of the ticks to lay out (most of a report's drawing time went to them)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))


IMAGE_SUFFIXES = (".png", ".pdf", ".svg")  # the formats ``save`` writes, by the file's suffix (PNG for any other)


def save(fig: Figure, path: str | Path | BinaryIO, dpi: int = 100, suffix: str | None = None) -> None:
    """Write the figure as PDF or SVG where ``suffix`` (by default the path's) says so, else as PNG, and close it;
    ``path``: a file's name, or a binary file open for writing (``suffix`` then given)."""
    suffix = (Path(path).suffix if suffix is None else suffix).lower()  # type: ignore[arg-type]
    _thin_log_minor_ticks(fig)
    try:
        fig.savefig(path, dpi=dpi, format=suffix[1:] if suffix in IMAGE_SUFFIXES else "png")
    finally:
        plt.close(fig)


def iteration_axis(iterations: float | None, points: int) -> np.ndarray:
    """The iteration of each of ``points`` loss values spread evenly over ``iterations`` run (a stored curve is
    subsampled that way: first and last kept); 1, 2, ... when ``iterations`` is not known."""
    return np.linspace(1, max(float(iterations or points), 1.0), points)


def plot_loss_curve(ax: Axes, loss_history: Sequence[float], iterations: float | None = None,
                    threshold: float | None = None) -> Figure:
    """Loss against iteration (log scale when it spans more than a decade); non-finite points are dropped.
    ``iterations``: how many the run made, when ``loss_history`` is a subsampled curve of fewer points. With
    ``threshold`` (a run stopped as exploded) the line ``threshold`` x the first loss it crossed, dashed."""
    loss = np.asarray(loss_history, dtype=float)
    it = iteration_axis(iterations, len(loss))
    ok = np.isfinite(loss)
    ax.plot(it[ok], loss[ok], lw=1)
    shown = loss[ok]
    if threshold is not None and ok.any():
        ax.axhline(threshold * shown[0], color="tab:red", ls="--", lw=0.9, label=f"{threshold:g} x first loss (stop)")
        shown = np.append(shown, threshold * shown[0])
        ax.legend(fontsize=8)
    if shown.size and shown.min() > 0 and shown.max() / shown.min() > 10:
        _set_scale(ax, "y", True)  # labelled as the report's loss curves are: 5, 10, 20, not 10^1 and 2x10^1 alone
    _whole_number_ticks(ax.xaxis)  # whole iterations
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    return ax.figure


def plot_accuracy_curves(ax: Axes, train_acc: Sequence[float], val_acc: Sequence[float]) -> Figure:
    """Train and validation accuracy per epoch: the gap between them shows overfitting."""
    epochs = np.arange(1, len(val_acc) + 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy")
    if not len(val_acc):  # a run stopped in its first epoch
        ax.text(0.5, 0.5, "no epoch finished", ha="center", va="center", transform=ax.transAxes)
        return ax.figure
    ax.plot(epochs, train_acc, marker="o", ms=3, label="train")
    ax.plot(epochs, val_acc, marker="o", ms=3, label="val")
    _whole_number_ticks(ax.xaxis)  # no epoch 1.5
    ax.legend()
    return ax.figure


def plot_training(
    axes: Sequence[Axes], loss_history: Sequence[float], train_acc: Sequence[float], val_acc: Sequence[float],
    iterations: float | None = None, title: str | None = None, threshold: float | None = None,
) -> Figure:
    """Loss curve on the first axis (``iterations``, ``threshold``: as in :func:`plot_loss_curve`), accuracy curves
    on the second, ``title`` above both."""
    plot_loss_curve(axes[0], loss_history, iterations=iterations, threshold=threshold)
    fig = plot_accuracy_curves(axes[1], train_acc, val_acc)
    if title:
        fig.suptitle(title)
    return fig


def layer_histogram_axes(depth: int, cols: int = 4, size: tuple[float, float] = (3.0, 2.2)) -> list[Axes]:
    """The axes ``plot_layer_histograms`` draws on, ``size`` inches each: mean and std in a first row of ``cols``
    panels, then ``depth`` histograms ``cols`` a row; two grids, so that the std curve's tick labels do not widen the
    gap before the second column of histograms, as one grid of them all did."""
    rows = -(-depth // cols)
    fig = plt.figure(figsize=(size[0] * cols, size[1] * (1 + rows)), layout="constrained")
    curves, histograms = fig.add_gridspec(2, 1, height_ratios=(1, rows))
    top, grid = curves.subgridspec(1, cols), histograms.subgridspec(rows, cols)
    return [fig.add_subplot(top[0, 0]), fig.add_subplot(top[0, 1]),
            *(fig.add_subplot(grid[k // cols, k % cols]) for k in range(depth))]


def plot_layer_histograms(
    axes: Sequence[Axes], hidden: Sequence[np.ndarray], means: Sequence[float], stds: Sequence[float], title: str
) -> Figure:
    """Mean and std per layer on the first two axes, then one histogram of each layer's outputs."""
    layers = np.arange(1, len(hidden) + 1)
    axes[0].plot(layers, means, marker="o")
    axes[0].set_title("layer mean")
    axes[1].plot(layers, stds, marker="o", color="tab:red")
    axes[1].set_title("layer std")
    for ax in axes[:2]:
        ax.set_xlabel("layer")
        _whole_number_ticks(ax.xaxis)  # no layer 0.96
    # on the scale of the spread, from 0 for the std: zoomed to their own range, a std of 0.80 to 0.87 through ten
    # layers (he + relu, "keeps its scale") drew as wild swings, and a mean of +-5e-5 as one
    spread = 1.1 * max(max(stds, default=0.0), max((abs(m) for m in means), default=0.0)) or 1.0
    axes[0].set_ylim(-spread, spread)
    axes[1].set_ylim(0.0, spread)
    lo = min(float(np.min(h)) for h in hidden)
    hi = max(float(np.max(h)) for h in hidden)
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    for i, (ax, h) in enumerate(zip(axes[2:], hidden), start=1):
        ax.hist(h.ravel(), bins=30, range=(lo, hi))
        ax.set_title(f"layer {i}", fontsize=9)
        ax.set_yticks([])
    axes[0].figure.suptitle(title)
    return axes[0].figure


# --------------------------------------------------------------------------- search plots (report, compare)
# Each takes plain data (DataFrames with the columns of studies.queries.trials_frame, or arrays) and
# the axes to draw on, and returns the figure. Colours: value by viridis; exploded trials red x, trials
# pruned by the scheduler orange triangles, failed ones grey squares.
PRUNED_STYLE = {"marker": "x", "color": "tab:red", "s": 22, "linewidths": 1.0}
SCHEDULER_STYLE = {"marker": "v", "facecolors": "none", "edgecolors": "tab:orange", "s": 22, "linewidths": 1.0}
EXPLODED_REASONS = ("exploded", "nan")  # a PRUNED trial's stop reasons when its loss blew up; else the scheduler's
EXPLODED_LABEL, SCHEDULER_LABEL, FAILED_LABEL = "exploded or nan (pruned)", "pruned by the scheduler", "failed"
FAILED_STYLE = {"marker": "s", "facecolors": "none", "edgecolors": "grey", "s": 18, "linewidths": 0.8}
# a stage's colour and marker, the same stage alike in every plot; never red, orange or grey, nor the x and the
# downward triangle, which mark exploded, scheduler-pruned and failed trials beside the stages; eleven, so that a
# search auto campaign of four fine stages and a grid (coarse, promote-k, fine-k, final, grid) has no two alike
STAGE_COLOURS = (*(plt.get_cmap("tab10").colors[i] for i in (0, 2, 4, 5, 6, 8, 9)),
                 *(matplotlib.colors.to_rgb(name) for name in ("black", "navy", "teal", "magenta")))
STAGE_MARKERS = ("o", "^", "s", "D", "P", "*", "<", ">", "h")


def stage_colour(index: int, given: Sequence[Any] = ()) -> Any:
    """The colour of a campaign's ``index``-th stage (in creation order) in every plot: ``given[index]`` where the
    caller names one."""
    chosen = given[index] if index < len(given) else None
    return STAGE_COLOURS[index % len(STAGE_COLOURS)] if chosen is None else chosen


BOTTOM_EDGE = 0.03  # where stopped and failed trials sit on a value axis: this fraction of it from the bottom


def _whole_number_ticks(axis: Any) -> None:
    """Ticks of ``axis`` at whole numbers only (an iteration, epoch, trial or layer, never 1.5), at least one."""
    axis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))


def _set_scale(ax: Axes, axis: str, log: bool) -> None:
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log" if log else "linear")
    if log:  # matplotlib's own minor labels overlap, and without any a range such as hidden=16:256 had one label (100)
        target = ax.xaxis if axis == "x" else ax.yaxis
        target.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda x, pos: _minor_log_label(x, target)))
        scientific = matplotlib.ticker.LogFormatterSciNotation()
        scientific.set_axis(target)
        # beside the minor 20 and 50 a major 10^2 read as another kind of number: there it is 100
        target.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, pos: f"{x:g}" if _narrow(target) else scientific(x, pos)))


def _narrow(axis: Any) -> bool:
    """Whether a log axis spans under two decades, where the powers of ten alone leave one or two labels."""
    low, high = sorted(axis.get_view_interval())
    return 0 < low and np.log10(high / low) < 2


def _minor_log_label(x: float, axis: Any) -> str:
    """A log axis's minor tick label: 2 and 5 times a power of ten (``20``, ``0.05``) when the axis is ``_narrow``;
    nothing on a wider axis."""
    if not (_narrow(axis) and x > 0):
        return ""
    mantissa = x / 10 ** np.floor(np.log10(x) + 1e-9)
    return f"{x:g}" if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""


def column_floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats: NaN where a cell is missing or not a number, and everywhere when there is no such column."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


@dataclass(frozen=True)
class Dim:
    """One searched dimension as an axis shows it: "float", "int" or "categorical" (with its choices)."""

    name: str
    kind: str = "float"
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.kind != "categorical"


def value_key(value: Any) -> tuple[str, Any]:
    """A hashable key that keeps True, 1 and "1" apart (Python's True == 1 would merge them)."""
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return ("number", float(value))
    return ("text", str(value))


def positions(frame: pd.DataFrame, dim: Dim, rng: np.random.Generator | None = None, jitter: float = 0.25) -> np.ndarray:
    """Where each trial sits on a dimension's axis: its value, or its category's index plus jitter (NaN if absent)."""
    if dim.numeric:
        return column_floats(frame, f"param_{dim.name}")
    index = {value_key(c): i for i, c in enumerate(dim.choices)}
    raw = frame[f"param_{dim.name}"].to_numpy(dtype=object) if f"param_{dim.name}" in frame else [None] * len(frame)
    out = np.array([np.nan if v is None or (isinstance(v, float) and np.isnan(v)) else index.get(value_key(v), np.nan)
                    for v in raw], dtype=float)
    if rng is not None:
        out += rng.uniform(-jitter, jitter, out.size)
    return out


MAX_CATEGORY_TICKS = 8


def dress_axis(ax: Axes, axis: str, dim: Dim, values: np.ndarray | None = None) -> None:
    """Scale, limits and label of one axis: log or linear for a number, one tick per category for a choice."""
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(dim.name + (" (log)" if dim.numeric and dim.log else ""))
    if dim.numeric:
        _set_scale(ax, axis, dim.log)
        if dim.kind == "int" and not dim.log:  # no depth 1.25
            _whole_number_ticks(ax.xaxis if axis == "x" else ax.yaxis)
        if values is not None:
            ok = values[np.isfinite(values) & ((values > 0) if dim.log else True)]
            if ok.size:
                (ax.set_xlim if axis == "x" else ax.set_ylim)(*_padded(float(ok.min()), float(ok.max()), dim.log))
        return
    # a tick per category, or per so many that at most MAX_CATEGORY_TICKS are labelled: the labels of a choice of
    # thousands of values overlapped into one black band, and took minutes to lay out
    step = -(-len(dim.choices) // MAX_CATEGORY_TICKS)
    ticks = list(range(0, len(dim.choices), step))
    labels = [value_text(dim.choices[i]) for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, labels)
        ax.set_xlim(-0.5, len(dim.choices) - 0.5)
    else:
        ax.set_yticks(ticks, labels)
        ax.set_ylim(-0.5, len(dim.choices) - 0.5)


def _state_legend(fig: Figure) -> None:
    """One legend for the whole figure, the same whatever the panels hold."""
    handles = [
        Line2D([], [], ls="", marker="o", mfc="lightgrey", mec="black", mew=0.5, label="complete (colour: accuracy)"),
        Line2D([], [], ls="", marker="x", color="tab:red", label=EXPLODED_LABEL),
        Line2D([], [], ls="", marker="v", mfc="none", mec="tab:orange", label=SCHEDULER_LABEL),
        Line2D([], [], ls="", marker="s", mfc="none", mec="grey", label=FAILED_LABEL),
    ]
    # four entries take about 7.5 inches in a row: two rows of two under a narrower figure (one pair panel)
    fig.legend(handles=handles, loc="outside lower center", ncols=4 if fig.get_figwidth() >= 8 else 2, fontsize=8,
               frameon=False)


def unvalued_masks(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exploded or nan, pruned by the scheduler, failed): boolean masks of a trials frame's rows."""
    state = frame["state"].to_numpy(dtype=object)
    reason = frame["stop_reason"].to_numpy(dtype=object) if "stop_reason" in frame else np.full(len(frame), None)
    exploded = (state == "PRUNED") & np.isin(reason, EXPLODED_REASONS)
    return exploded, (state == "PRUNED") & ~exploded, state == "FAIL"


def plot_unvalued(ax: Axes, exploded_x: np.ndarray, scheduler_x: np.ndarray, failed_x: np.ndarray) -> None:
    """Exploded (red x), scheduler-pruned (orange triangle) and failed (grey square) trials at their x along the
    bottom edge of a value axis: a pruned run stopped early (no value, or one from an earlier epoch) and a failed
    one has none; the x limits hold them, and the value axis gets room below its values for them. Call it after the
    values are drawn."""
    drawn = False
    for xs, style, label in ((exploded_x, PRUNED_STYLE, EXPLODED_LABEL),
                             (scheduler_x, SCHEDULER_STYLE, SCHEDULER_LABEL), (failed_x, FAILED_STYLE, FAILED_LABEL)):
        xs = np.asarray(xs, dtype=float)
        xs = xs[np.isfinite(xs)]
        if xs.size:
            ax.scatter(xs, np.full(xs.size, BOTTOM_EDGE), transform=ax.get_xaxis_transform(), zorder=3, label=label,
                       **style)
            ax.update_datalim(np.column_stack([xs, np.zeros(xs.size)]), updatey=False)  # the axes' x limits
            drawn = True
    if drawn:
        low, high = ax.dataLim.intervaly
        if np.isfinite(low) and np.isfinite(high):  # the lowest value above the marks, not on them
            low, high = ax.get_ylim()
            ax.set_ylim(low - 0.06 * (high - low), high)
        else:
            ax.set_ylim(0.0, 1.0)  # no value at all: an accuracy axis


UNVALUED_ZORDER = 0.9  # stopped and failed trials in a pair plot, below the completed ones (a collection's 1)
CONSTANT_HALF_SPAN = 0.005  # the colour scale's reach either side of a stage whose trials all scored the same


def plot_param_scatter(
    axes: Sequence[Axes], stages: Sequence[tuple[str, pd.DataFrame]], x: Dim, y: Dim, seed: int = 0
) -> Figure:
    """One panel per (title, trials) stage: x against y, each on its own scale (categories jittered), coloured
    by value on the stage's own colour scale; pruned red x, failed grey squares; one legend for all panels."""
    rng = np.random.default_rng(seed)
    all_x = np.concatenate([positions(f, x) for _, f in stages] or [np.array([])])
    all_y = np.concatenate([positions(f, y) for _, f in stages] or [np.array([])])
    for ax, (title, frame) in zip(axes, stages):
        px, py = positions(frame, x, rng), positions(frame, y, rng)
        state = frame["state"].to_numpy(dtype=object)
        done = state == "COMPLETE"
        values = column_floats(frame, "value")
        ok = done & np.isfinite(values)
        if ok.any():
            lo, hi = float(values[ok].min()), float(values[ok].max())
            if hi <= lo:  # one value: a scale of 1e-6 above it drew the best trials in its lowest colour, under a
                # colour bar labelled 1e-6+9.88372e-1; half a point either side puts them mid-scale, at their value
                lo, hi = lo - CONSTANT_HALF_SPAN, hi + CONSTANT_HALF_SPAN
                if 0.0 <= values[ok].min() and values[ok].max() <= 1.0:  # an accuracy: no bar up to 1.004
                    lo, hi = max(lo, 0.0), min(hi, 1.0)
            norm = matplotlib.colors.Normalize(vmin=lo, vmax=hi)
            order = np.argsort(values[ok])  # the best drawn last, on top
            mappable = ax.scatter(px[ok][order], py[ok][order], c=values[ok][order], cmap="viridis", norm=norm,
                                  s=26, edgecolors="black", linewidths=0.3)
            ax.figure.colorbar(mappable, ax=ax, label="validation accuracy", shrink=0.9)
        for mask, style in zip(unvalued_masks(frame), (PRUNED_STYLE, SCHEDULER_STYLE, FAILED_STYLE)):
            if mask.any():  # under the completed trials: an asha stage's 127 stopped runs hid its 23 complete ones
                ax.scatter(px[mask], py[mask], zorder=UNVALUED_ZORDER, **style)
        dress_axis(ax, "x", x, all_x)
        dress_axis(ax, "y", y, all_y)
        ax.set_title(f"{title} ({int(done.sum())} complete, {int((state == 'PRUNED').sum())} pruned)", fontsize=10)
    fig = axes[0].figure
    _state_legend(fig)
    return fig


def plot_param_slices(
    axes: Sequence[Axes], stages: Sequence[tuple[str, pd.DataFrame]], dims: Sequence[Dim], seed: int = 0
) -> Figure:
    """Value against each dimension alone, one panel per dimension, one colour per stage: a number on its own
    scale (log for a log range), a category as a box of all stages' values with each trial jittered beside it;
    pruned and failed trials along the bottom edge at their value of the dimension; one legend below the panels,
    where it covers no trial."""
    rng = np.random.default_rng(seed)
    for ax, dim in zip(axes, dims):
        if not dim.numeric:
            done = [f[f["state"] == "COMPLETE"] for _, f in stages]
            at = np.concatenate([positions(d, dim) for d in done] or [np.array([])])
            values = np.concatenate([column_floats(d, "value") for d in done] or [np.array([])])
            kept = np.isfinite(at) & np.isfinite(values)
            # a box only where a category has trials: one per category drew 5,000 empty ones (a minute a choice
            # list of 5,000 values took, for one trial)
            where = sorted({int(i) for i in at[kept]})
            boxes = [values[kept & (at == i)] for i in where]
            if boxes:  # none where no trial is complete: matplotlib's boxplot of no box raises ValueError
                ax.boxplot(boxes, positions=where, widths=0.6, showfliers=False, manage_ticks=False,
                           medianprops={"color": "black"}, boxprops={"color": "grey"},
                           whiskerprops={"color": "grey"}, capprops={"color": "grey"})
        unvalued: list[list[np.ndarray]] = [[], [], []]
        for i, (title, frame) in enumerate(stages):
            done = frame[frame["state"] == "COMPLETE"]
            ax.scatter(positions(done, dim, None if dim.numeric else rng, 0.2), column_floats(done, "value"), s=16,
                       alpha=0.75, marker=STAGE_MARKERS[i % len(STAGE_MARKERS)], color=stage_colour(i),
                       label=title, zorder=3)
            for found, mask in zip(unvalued, unvalued_masks(frame)):
                found.append(positions(frame[mask], dim, None if dim.numeric else rng, 0.2))
        plot_unvalued(ax, *(np.concatenate(found or [np.array([])]) for found in unvalued))
        dress_axis(ax, "x", dim, None)
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"validation accuracy vs {dim.name}", fontsize=10)
        ax.grid(alpha=0.3)
    fig = axes[0].figure
    entries: dict[str, Any] = {}  # label -> handle, in the order first drawn: stages, then exploded, pruned, failed
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    rows = -(-len(entries) // max(1, int(fig.get_figwidth() // 2)))  # as few rows as the width allows
    cols = max(1, -(-len(entries) // max(1, rows)))  # and the entries spread evenly over them
    # matplotlib fills a legend column by column: given so, the entries read left to right, then the next row
    order = [k for j in range(cols) for k in range(j, len(entries), cols)]
    labels = list(entries)
    fig.legend([entries[labels[k]] for k in order], [labels[k] for k in order], loc="outside lower center",
               fontsize=8, frameon=False, ncols=cols)
    return fig


def plot_importance(axes: Sequence[Axes], stages: Sequence[tuple[str, dict[str, float]]]) -> Figure:
    """One horizontal bar chart per (title, name -> importance) stage, the most important dimension on top."""
    for ax, (title, importance) in zip(axes, stages):
        names = sorted(importance, key=lambda n: importance[n])
        shares = [importance[n] for n in names]
        bars = ax.barh(names, shares, color="tab:blue")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in shares], padding=2, fontsize=8)
        ax.set_xlim(0, max(1.0, max(shares, default=0) * 1.15))
        ax.set_xlabel("importance (fANOVA, share of variance)")
        ax.set_title(f"{title}: parameter importance", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    return axes[0].figure


def plot_history(ax: Axes, stages: Sequence[tuple[str, pd.DataFrame]], legend_below: bool = False) -> Figure:
    """Every COMPLETE trial's value by trial number, stage after stage, with each stage's best so far; pruned and
    failed trials along the bottom edge; the i-th stage in ``stage_colour(i)``. The legend beside the axes, or
    (``legend_below``, a figure for a phone's narrow screen) under them."""
    offset = 0
    unvalued: list[list[np.ndarray]] = [[], [], []]
    for i, (title, frame) in enumerate(stages):
        frame = frame.sort_values("number", kind="stable")
        number = frame["number"].to_numpy(dtype=float) + offset
        for found, mask in zip(unvalued, unvalued_masks(frame)):
            found.append(number[mask])
        value = np.where(frame["state"].to_numpy(dtype=object) == "COMPLETE", column_floats(frame, "value"), np.nan)
        colour = stage_colour(i)
        ax.scatter(number, value, s=12, color=colour, alpha=0.6, label=title)
        best = np.fmax.accumulate(np.where(np.isfinite(value), value, -np.inf)) if value.size else value
        ax.step(number, np.where(np.isfinite(best), best, np.nan), where="post", color=colour, lw=1.5)
        if i:
            ax.axvline(offset - 0.5, color="grey", lw=0.8, ls=":")
        offset += int(frame["number"].max()) + 1 if len(frame) else 0
    plot_unvalued(ax, *(np.concatenate(found or [np.array([])]) for found in unvalued))
    ax.set_xlabel("trial number (stages one after another)")
    _whole_number_ticks(ax.xaxis)  # no trial 2.5
    ax.set_ylabel("validation accuracy")
    ax.set_title("history: each trial's value and the stage's best so far", fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    best = Line2D([], [], color="grey", lw=1.5, label="line: the stage's best so far")  # each in its stage's colour
    # beside the axes: inside ("best") it hid the trials of a stage that filled the plot
    _outside_legend(ax, [*handles, best], [*labels, best.get_label()], 8, legend_below)
    return ax.figure


def _outside_legend(ax: Axes, handles: Sequence[Any], labels: Sequence[str], fontsize: float, below: bool) -> None:
    """A legend outside the axes, where it covers no data: beside them, or under the figure in two columns (a
    phone's narrow figure, where one beside would take half its width)."""
    if below:
        ax.figure.legend(handles, labels, fontsize=fontsize, loc="outside lower center", ncols=2, frameon=False)
    else:
        ax.legend(handles, labels, fontsize=fontsize, loc="center left", bbox_to_anchor=(1.01, 0.5))


def plot_ranges(
    ax: Axes,
    ranges: Sequence[tuple[str, tuple[float, float], tuple[float, float]]],
    x: str = "lr",
    y: str = "reg",
    log: tuple[bool, bool] = (True, True),
    best: Sequence[tuple[str, float, float]] = (),
    dashed: Sequence[str] = (),
    colours: Sequence[Any] = (),
    legend_below: bool = False,
) -> Figure:
    """Each stage's (label, (x_low, x_high), (y_low, y_high)) drawn as a rectangle, and best points as stars:
    the narrowing and widening from coarse to fine stages. Labels in ``dashed`` (e.g. a grid over the coarse
    range) get a dashed outline, so a rectangle on top of another still shows both. ``colours``: one per range
    (default ``stage_colour(i)``), each stage's star in its rectangle's colour; the legend beside the axes, or under
    them (``legend_below``)."""
    colour_of: dict[str, Any] = {}
    xs: list[float] = []
    ys: list[float] = []
    for i, (label, (x0, x1), (y0, y1)) in enumerate(ranges):
        colour = colour_of[label] = stage_colour(i, colours)
        ls = "--" if label in dashed else "-"
        ax.add_patch(matplotlib.patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=True, alpha=0.08,
                                                  facecolor=colour, edgecolor=colour, lw=2, ls=ls, label=label))
        ax.add_patch(matplotlib.patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=2,
                                                  ls=ls))
        xs += [x0, x1]
        ys += [y0, y1]
    for i, (label, bx, by) in enumerate(best):
        ax.scatter([bx], [by], marker="*", s=140, color=colour_of.get(label, stage_colour(i)), edgecolors="black",
                   linewidths=0.6, zorder=3, label=f"best of {label}")
    if xs:
        _set_scale(ax, "x", log[0])
        _set_scale(ax, "y", log[1])
        ax.set_xlim(*_padded(min(xs), max(xs), log[0]))
        ax.set_ylim(*_padded(min(ys), max(ys), log[1]))
    ax.set_xlabel(x + (" (log)" if log[0] else ""))  # as the other plots name a log axis
    ax.set_ylabel(y + (" (log)" if log[1] else ""))
    ax.set_title("searched ranges by stage", fontsize=10)
    _outside_legend(ax, *ax.get_legend_handles_labels(), 7, legend_below)
    return ax.figure


def _padded(lo: float, hi: float, log: bool, pad: float = 0.08) -> tuple[float, float]:
    if log and lo > 0:
        a, b = np.log10(lo), np.log10(hi)
        d = max(b - a, 1e-3) * pad
        return 10 ** (a - d), 10 ** (b + d)
    d = max(hi - lo, 1e-12) * pad
    return lo - d, hi + d


def plot_loss_curves(
    ax: Axes, curves: Sequence[tuple[str, float, Sequence[float | None]]], title: str = "loss curves",
    threshold: float | None = None,
) -> Figure:
    """(label, iterations run, subsampled loss curve) per trial, against iteration; None points are gaps. With
    ``threshold`` (e.g. 3.0) each curve's explosion line, ``threshold`` x its first loss, is drawn dashed."""
    spans = []
    for i, (label, iterations, curve) in enumerate(curves):
        loss = np.array([np.nan if v is None else float(v) for v in curve], dtype=float)
        if loss.size == 0:
            continue
        it = iteration_axis(iterations, loss.size)
        ok = loss[np.isfinite(loss)]  # markers when few points: a 2-point curve still shows
        (line,) = ax.plot(it, loss, lw=1.2, label=label, marker="o" if ok.size < 20 else None, ms=4)
        if threshold is not None and ok.size:
            ax.axhline(threshold * ok[0], color=line.get_color(), ls="--", lw=0.9,
                       label=f"{threshold:g} x first loss (stop)" if i == 0 else None)
            ok = np.append(ok, threshold * ok[0])
        if ok.size and ok.min() > 0:
            spans.append(ok.max() / ok.min())
    if spans and max(spans) > 10:
        _set_scale(ax, "y", True)
    if not curves:
        ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
    _whole_number_ticks(ax.xaxis)  # whole iterations
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:  # below the axes: inside, five labels of trials covered their curves
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return ax.figure


def diagnosis_axes(n: int, cols: int = 2, size: tuple[float, float] = (6.6, 2.9)) -> list[tuple[Axes, Axes]]:
    """``n`` panels of two axes each (loss | accuracy), ``cols`` panels a row, on one new figure of ``size``
    inches per panel; each panel is a subfigure, so it can carry its own title."""
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = plt.figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(rows, cols, squeeze=False).ravel())
    return [tuple(sub.subplots(1, 2)) for sub in subfigs[:n]]  # type: ignore[misc]


def plot_diagnosis_examples(panels: Sequence[tuple[Axes, Axes]], examples: Sequence[dict[str, Any]]) -> Figure:
    """One panel per example trial: its loss curve against iteration (left; None points are gaps, a log axis when
    it spans more than a decade, ``threshold`` x its first loss dashed when given) and its train and validation
    accuracy per epoch (right), titled with ``title``. Each example: title, loss, iterations, train_acc, val_acc
    and optionally threshold."""
    for (loss_ax, acc_ax), ex in zip(panels, examples):
        loss = np.array([np.nan if v is None else float(v) for v in ex.get("loss") or []], dtype=float)
        finite = np.isfinite(loss)
        ok = loss[finite]
        if ok.size:
            it = iteration_axis(ex.get("iterations"), loss.size)
            # the finite points joined (a None between two is no gap in the line), markers when few are left
            loss_ax.plot(it[finite], ok, lw=1.4, color="tab:blue", marker="o" if ok.size < 20 else None, ms=3)
            threshold = ex.get("threshold")
            if threshold and ok.size:
                loss_ax.axhline(threshold * ok[0], color="tab:red", ls="--", lw=0.9, label=f"{threshold:g} x first")
                loss_ax.legend(fontsize=7, loc="best")
                ok = np.append(ok, threshold * ok[0])
            if ok.size and ok.min() > 0 and ok.max() / ok.min() > 10:
                _set_scale(loss_ax, "y", True)
            elif ok.size and ok.min() >= 0:  # from 0, so a loss that barely moved looks flat; headroom above
                top = float(ok.max()) * 1.15 or 1.0  # so a flat line never lies on the frame
                loss_ax.set_ylim(-0.04 * top, top)
        else:
            loss_ax.text(0.5, 0.5, "no loss curve", ha="center", va="center", transform=loss_ax.transAxes)
        loss_ax.set_xlabel("iteration", fontsize=8)
        loss_ax.set_ylabel("loss", fontsize=8)
        loss_ax.set_title("loss", fontsize=9)
        train = np.array([np.nan if v is None else float(v) for v in ex.get("train_acc") or []], dtype=float)
        val = np.array([np.nan if v is None else float(v) for v in ex.get("val_acc") or []], dtype=float)
        for values, label, colour in ((train, "train", "tab:orange"), (val, "val", "tab:green")):
            if values.size:
                acc_ax.plot(np.arange(1, values.size + 1), values, marker="o", ms=3, lw=1.2, color=colour, label=label)
        if train.size or val.size:
            acc_ax.legend(fontsize=7, loc="best")
        else:
            acc_ax.text(0.5, 0.5, "no epoch finished", ha="center", va="center", transform=acc_ax.transAxes)
        acc_ax.set_xlabel("epoch", fontsize=8)
        acc_ax.set_ylabel("accuracy", fontsize=8)
        acc_ax.set_title("accuracy per epoch", fontsize=9)
        for ax in (loss_ax, acc_ax):  # few ticks: most of such a figure's drawing time is spent on tick labels
            ax.tick_params(which="both", labelsize=7)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5, integer=True, min_n_ticks=1))
            if ax.get_yscale() != "log":  # a log axis: minor ticks at 2 and 5 (figure_png), labelled where it spans
                # under two decades, else a loss of 6,000 to 30,000 read off one label, 10^4
                ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
            ax.grid(alpha=0.3)
        loss_ax.get_figure(root=False).suptitle(ex.get("title", ""), fontsize=9, fontweight="bold")
    return panels[0][0].get_figure(root=True)


def plot_best_so_far(
    ax: Axes, series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    xlabel: str = "cumulative training time (s)", colours: Sequence[Any] = (),
) -> Figure:
    """(label, x, best value so far) step lines, e.g. against cumulative training seconds for grid and random;
    ``colours``: one per series (default ``stage_colour(i)``)."""
    for i, (label, xs, best) in enumerate(series):
        ax.step(np.asarray(xs, dtype=float), np.asarray(best, dtype=float), where="post", lw=1.6, label=label,
                color=stage_colour(i, colours))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best value so far")
    ax.set_title("best so far against training time", fontsize=10)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="lower right")
    return ax.figure


def plot_median_band(
    ax: Axes, series: Sequence[tuple[str, np.ndarray]], band: tuple[float, float] = (25.0, 75.0),
    xlabel: str = "trials used",
) -> Figure:
    """(label, repeats x steps array of best-so-far) per method: the median line and a percentile band."""
    for label, runs in series:
        runs = np.asarray(runs, dtype=float)
        if runs.size == 0:
            continue
        steps = np.arange(1, runs.shape[1] + 1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before the first completed trial
            med = np.nanmedian(runs, axis=0)
            lo, hi = np.nanpercentile(runs, band[0], axis=0), np.nanpercentile(runs, band[1], axis=0)
        (line,) = ax.plot(steps, med, lw=2, marker="o", ms=3, label=f"{label} (median of {runs.shape[0]})")
        ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color(),
                        label=f"{label} {band[0]:g}-{band[1]:g}th percentile")
    _whole_number_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best value reached")
    ax.set_title("best value reached against trials used", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax.figure


Draw = Callable[[bool], Figure]  # draw(phone) -> the figure in its desktop (False) or phone (True) layout
_STOPS = {signal.SIGINT, signal.SIGTERM}  # held while the helper is forked
HELPER_PATIENCE_S = 60.0  # and 10 x this process's slowest figure: how long the drawing helper's last ones may take
DRAW_BESIDE = True  # render_pngs may fork a process that draws beside this one (False: tests that watch the drawing)


def render_pngs(jobs: Sequence[tuple[str, Draw]]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Each job's figure as PNG in both layouts: (name -> desktop PNG, name -> phone PNG), in the jobs' order.

    matplotlib draws on one core, and drawing took about two thirds of a report's time; on Linux with two or more
    usable cores a forked process draws beside this one, each taking the next figure not yet taken. Where it cannot
    start, or stops before sending what it drew, this process draws the rest: the same bytes either way.
    """
    units = [(name, phone) for name, _ in jobs for phone in (False, True)]
    draw = dict(jobs)
    context = multiprocessing.get_context("fork") if DRAW_BESIDE and _helper_may_draw(len(units)) else None
    taken = None
    if context is not None:
        try:
            taken = context.Value("i", 0)
        except OSError:  # no shared semaphore to be had (no /dev/shm, as in some containers): drawn here alone
            pass

    def take() -> int | None:
        if taken is None:
            return None
        with taken.get_lock():
            index, taken.value = taken.value, taken.value + 1
        return index if index < len(units) else None

    def png(index: int) -> bytes:
        name, phone = units[index]
        return figure_png(draw[name](phone))

    def helper(sender: Any) -> None:  # the forked process: Ctrl-C is the parent's to handle; it ends this one
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # as before the fork, which held them
        # the parent's end, copied by the fork: held open here, a parent killed (SIGKILL) before reading left this
        # process blocked for good in its send, a full pipe with a reader in itself; closed, the send fails
        receiver.close()
        try:
            drawn = {}
            while (index := take()) is not None:
                drawn[index] = png(index)
            sender.send(drawn)  # once, at the end: a send blocks until read, and the parent reads after drawing
        except BaseException:  # a figure that fails fails again where the parent draws it; a parent gone: no one
            os._exit(1)  # to tell (and no traceback on the terminal of a command that ended)

    done: dict[int, bytes] = {}
    process = receiver = held = None
    if taken is not None:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=helper, args=(sender,), daemon=True)
        # Ctrl-C or SIGTERM held while the fork is made: cut inside start(), the process was made but never
        # ended (nor known to multiprocessing), and drew on after the command ended; the helper takes them once
        # its own handlers are in place, this process below, where they end the helper
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            with warnings.catch_warnings():  # Python 3.12+ warns of forking beside threads: the BLAS's own, idle,
                warnings.simplefilter("ignore", DeprecationWarning)  # whose library re-makes them after a fork
                process.start()
        except OSError:  # no process to be had (a limit on processes or memory): drawn here alone
            process = None
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        sender.close()
    try:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a signal held till now is raised here
        if process is not None:
            slowest = 0.0
            while (index := take()) is not None:
                started = time.monotonic()
                done[index] = png(index)
                slowest = max(slowest, time.monotonic() - started)
            # it has a figure or so left to draw: silent far longer than that, it hangs, and is ended below
            if receiver.poll(HELPER_PATIENCE_S + 10 * slowest):
                try:
                    done.update(receiver.recv())
                except (EOFError, OSError):  # it stopped before sending: what it took is drawn below
                    pass
        for index in range(len(units)):
            if index not in done:
                done[index] = png(index)
    finally:
        if process is not None:
            if process.is_alive():
                process.terminate()
            process.join()
        if receiver is not None:
            receiver.close()
    images = {name: done[i] for i, (name, phone) in enumerate(units) if not phone}
    phones = {name: done[i] for i, (name, phone) in enumerate(units) if phone}
    return images, phones


def _helper_may_draw(units: int) -> bool:
    """Whether a forked process may draw beside this one: more than one figure, Linux, two or more usable cores, and
    no other Python thread (one holding a lock as the fork copies it, stderr's for one, would leave the copy locked
    for good in the forked process)."""
    return (units > 1 and sys.platform.startswith("linux") and hasattr(os, "sched_getaffinity")
            and len(os.sched_getaffinity(0)) >= 2 and threading.active_count() == 1)


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buffer = io.BytesIO()
    _thin_log_minor_ticks(fig)
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    return buffer.getvalue()
