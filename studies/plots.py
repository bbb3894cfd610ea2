"""Plot functions: each takes data and matplotlib axes and returns the figure (Agg backend, never shown)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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
