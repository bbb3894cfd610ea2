"""Plot functions: each takes data and matplotlib axes and returns the figure (Agg backend, never shown)."""
from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def new_axes(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.5)) -> np.ndarray:
    """A grid of axes (always a 2-D array) on a new figure of ``size`` inches per panel."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    fig.set_layout_engine("constrained")
    return axes


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as PNG and close it."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path


def plot_loss_curve(ax: Axes, loss_history: Sequence[float], label: str | None = None, title: str = "loss") -> Figure:
    """Per-iteration loss (log scale when it spans more than a decade); non-finite points are dropped."""
    loss = np.asarray(loss_history, dtype=float)
    it = np.arange(1, len(loss) + 1)
    ok = np.isfinite(loss)
    ax.plot(it[ok], loss[ok], lw=1, label=label)
    if ok.any() and loss[ok].min() > 0 and loss[ok].max() / loss[ok].min() > 10:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    return ax.figure


def plot_accuracy_curves(ax: Axes, train_acc: Sequence[float], val_acc: Sequence[float]) -> Figure:
    """Train and validation accuracy per epoch: the gap between them shows overfitting."""
    epochs = np.arange(1, len(val_acc) + 1)
    ax.plot(epochs, train_acc, marker="o", ms=3, label="train")
    ax.plot(epochs, val_acc, marker="o", ms=3, label="val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy")
    ax.legend()
    return ax.figure


def plot_training(
    axes: Sequence[Axes], loss_history: Sequence[float], train_acc: Sequence[float], val_acc: Sequence[float]
) -> Figure:
    """Loss curve on the first axis, accuracy curves on the second."""
    plot_loss_curve(axes[0], loss_history)
    return plot_accuracy_curves(axes[1], train_acc, val_acc)


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
# the axes to draw on, and returns the figure. Colours: value by viridis; pruned trials red x.
PRUNED_STYLE = {"marker": "x", "color": "tab:red", "s": 22, "linewidths": 1.0}
FAILED_STYLE = {"marker": "s", "facecolors": "none", "edgecolors": "grey", "s": 18, "linewidths": 0.8}
STAGE_MARKERS = ("o", "^", "s", "D", "v", "P", "*", "<", ">", "h")


def _set_scale(ax: Axes, axis: str, log: bool) -> None:
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log" if log else "linear")
    if log:  # a range under two decades would otherwise label its minor ticks on top of each other
        (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(matplotlib.ticker.NullFormatter())


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def plot_param_scatter(
    axes: Sequence[Axes],
    stages: Sequence[tuple[str, pd.DataFrame]],
    x: str = "lr",
    y: str = "reg",
    log: tuple[bool, bool] = (True, True),
) -> Figure:
    """One panel per (title, trials) stage: x vs y coloured by value on one shared scale; pruned marked x."""
    values = np.concatenate([_numeric(f[f["state"] == "COMPLETE"], "value") for _, f in stages] or [np.array([])])
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    norm = matplotlib.colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
    # one x and y extent for every panel, so stages can be compared by eye
    all_x = np.concatenate([_numeric(f, f"param_{x}") for _, f in stages] or [np.array([])])
    all_y = np.concatenate([_numeric(f, f"param_{y}") for _, f in stages] or [np.array([])])
    limits = []
    for values, is_log in ((all_x, log[0]), (all_y, log[1])):
        values = values[np.isfinite(values) & ((values > 0) if is_log else True)]
        limits.append(_padded(float(values.min()), float(values.max()), is_log) if values.size else None)
    mappable = None
    for ax, (title, frame) in zip(axes, stages):
        px, py = _numeric(frame, f"param_{x}"), _numeric(frame, f"param_{y}")
        state = frame["state"].to_numpy(dtype=object)
        done = state == "COMPLETE"
        mappable = ax.scatter(px[done], py[done], c=_numeric(frame, "value")[done], cmap="viridis", norm=norm,
                              s=26, edgecolors="black", linewidths=0.3, label="complete")
        pruned = state == "PRUNED"
        if pruned.any():
            ax.scatter(px[pruned], py[pruned], label="pruned (exploded/nan)", **PRUNED_STYLE)
        failed = state == "FAIL"
        if failed.any() and np.isfinite(px[failed]).any():
            ax.scatter(px[failed], py[failed], label="failed", **FAILED_STYLE)
        _set_scale(ax, "x", log[0])
        _set_scale(ax, "y", log[1])
        if limits[0] is not None:
            ax.set_xlim(*limits[0])
        if limits[1] is not None:
            ax.set_ylim(*limits[1])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{title} ({int(done.sum())} complete, {int(pruned.sum())} pruned)", fontsize=10)
        if pruned.any() or failed.any():
            ax.legend(fontsize=7, loc="best")
    fig = axes[0].figure
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), label="validation accuracy", shrink=0.9)
    return fig


def plot_param_projection(
    axes: Sequence[Axes],
    stages: Sequence[tuple[str, pd.DataFrame]],
    params: Sequence[str],
    log: Sequence[bool] | None = None,
) -> Figure:
    """Value against each parameter alone (one panel per parameter, one series per stage): a grid shows
    only its few columns here, random search a distinct value per trial."""
    log = list(log) if log is not None else [True] * len(params)
    colours = plt.get_cmap("tab10").colors
    for ax, name, is_log in zip(axes, params, log):
        for i, (title, frame) in enumerate(stages):
            done = frame[frame["state"] == "COMPLETE"]
            ax.scatter(_numeric(done, f"param_{name}"), _numeric(done, "value"), s=18, alpha=0.75,
                       marker=STAGE_MARKERS[i % len(STAGE_MARKERS)], color=colours[i % len(colours)],
                       label=title)
        _set_scale(ax, "x", is_log)
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"validation accuracy vs {name} alone", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return axes[0].figure


def plot_ranges(
    ax: Axes,
    ranges: Sequence[tuple[str, tuple[float, float], tuple[float, float]]],
    x: str = "lr",
    y: str = "reg",
    log: tuple[bool, bool] = (True, True),
    best: Sequence[tuple[str, float, float]] = (),
) -> Figure:
    """Each stage's (label, (x_low, x_high), (y_low, y_high)) drawn as a rectangle, and best points as stars:
    the narrowing and widening from coarse to fine stages."""
    colours = plt.get_cmap("tab10").colors
    xs: list[float] = []
    ys: list[float] = []
    for i, (label, (x0, x1), (y0, y1)) in enumerate(ranges):
        colour = colours[i % len(colours)]
        ax.add_patch(matplotlib.patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=True, alpha=0.08,
                                                  facecolor=colour, edgecolor=colour, lw=2, label=label))
        ax.add_patch(matplotlib.patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=2))
        xs += [x0, x1]
        ys += [y0, y1]
    for i, (label, bx, by) in enumerate(best):
        ax.scatter([bx], [by], marker="*", s=140, color=colours[i % len(colours)], edgecolors="black",
                   linewidths=0.6, zorder=3, label=f"best of {label}")
    if xs:
        _set_scale(ax, "x", log[0])
        _set_scale(ax, "y", log[1])
        ax.set_xlim(*_padded(min(xs), max(xs), log[0]))
        ax.set_ylim(*_padded(min(ys), max(ys), log[1]))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title("searched ranges by stage", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax.figure


def _padded(lo: float, hi: float, log: bool, pad: float = 0.08) -> tuple[float, float]:
    if log and lo > 0:
        a, b = np.log10(lo), np.log10(hi)
        d = max(b - a, 1e-3) * pad
        return 10 ** (a - d), 10 ** (b + d)
    d = max(hi - lo, 1e-12) * pad
    return lo - d, hi + d


def plot_loss_curves(
    ax: Axes, curves: Sequence[tuple[str, float, Sequence[float | None]]], title: str = "loss curves"
) -> Figure:
    """(label, iterations run, subsampled loss curve) per trial, against iteration; None points are gaps."""
    any_positive = False
    spans = []
    for label, iterations, curve in curves:
        loss = np.array([np.nan if v is None else float(v) for v in curve], dtype=float)
        if loss.size == 0:
            continue
        it = np.linspace(1, max(float(iterations or loss.size), 1.0), loss.size)
        ax.plot(it, loss, lw=1.2, label=label, marker="o" if loss.size < 20 else None, ms=3)
        ok = loss[np.isfinite(loss)]
        if ok.size and ok.min() > 0:
            any_positive = True
            spans.append(ok.max() / ok.min())
    if any_positive and spans and max(spans) > 10:
        ax.set_yscale("log")
    if not curves:
        ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    if curves:
        ax.legend(fontsize=7, loc="best")
    return ax.figure


def plot_best_so_far(
    ax: Axes, series: Sequence[tuple[str, Sequence[float], Sequence[float]]], xlabel: str = "cumulative training time (s)"
) -> Figure:
    """(label, x, best value so far) step lines, e.g. against cumulative training seconds for grid and random."""
    for label, xs, best in series:
        ax.step(np.asarray(xs, dtype=float), np.asarray(best, dtype=float), where="post", lw=1.6, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("best so far", fontsize=10)
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
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation accuracy reached")
    ax.set_title("best value reached against trials used", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax.figure


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    return buffer.getvalue()
