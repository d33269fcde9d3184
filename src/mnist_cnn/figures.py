"""Matplotlib figures as PNG files: drawn off screen, written atomically (never half a PNG); a sweep's plot."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from mnist_cnn.atomic import write_atomically  # noqa: E402


def save_figure(fig, path: Path) -> bytes:
    """The figure as a PNG file; returns the PNG, so that TensorBoard shows the same pixels without drawing
    the figure again (its add_figure draws anew)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_atomically(path, buffer.getvalue())
    return buffer.getvalue()


def sweep_figure(stats: dict, key: str):
    """Mean and 95% interval of validation and test accuracy against one swept hyperparameter: `stats` maps
    each value of `key` to its Estimates (mnist_cnn.reports.sweep.group)."""
    numeric = all(_is_number(v) for v in stats)
    xs = sorted(stats, key=float if numeric else str)
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, label in (("best_val_acc", "validation"), ("test_acc", "test")):
        means = [stats[x][metric].mean for x in xs]
        halves = [stats[x][metric].half_width or 0.0 for x in xs]
        positions = [float(x) for x in xs] if numeric else list(range(len(xs)))
        ax.errorbar(positions, means, yerr=halves, marker="o", capsize=4, label=f"{label} accuracy")
    if numeric and key.endswith("batch_size"):
        ax.set_xscale("log", base=2)
    if not numeric:
        ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel(key)
    ax.set_ylabel("accuracy (mean; bars: 95% interval over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
