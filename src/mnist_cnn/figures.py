"""Matplotlib figures as PNG files: drawn off screen, written atomically (never half a PNG); images tiled on one
canvas; a sweep's plot."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from mnist_cnn.atomic import write_atomically  # noqa: E402


def save_figure(fig, path: Path) -> bytes:
    """The figure as a PNG file; returns the PNG, so that TensorBoard shows the same pixels without drawing
    the figure again (its add_figure draws anew). Cropped to what is drawn, which draws it twice, unless it is
    laid out to its edges already (`laid_out`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches=None if getattr(fig, "laid_out", False) else "tight")
    plt.close(fig)
    write_atomically(path, buffer.getvalue())
    return buffer.getvalue()


def laid_out(fig):
    """Marks a figure whose layout reaches its edges already: saved as it is, not cropped (save_figure)."""
    fig.laid_out = True
    return fig


def tiled(images: torch.Tensor, columns: int, cell: tuple[int, int], at: tuple[int, int]) -> tuple[torch.Tensor, list]:
    """Images (N, H, W), or (N, H, W, 3) colours, on one canvas, `columns` to a row, each in a cell of (height,
    width) pixels at offset `at` (top, left) within it; the rest of the canvas is NaN (drawn white). Returns the
    canvas and each image's (top, left). One image with text on it draws in a fraction of the time that a
    subplot per image takes to lay out."""
    rows = max(1, -(-len(images) // columns))
    height, width = images.shape[1:3]
    tiles = torch.full((rows * cell[0], columns * cell[1], *images.shape[3:]), float("nan"))
    corners = []
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = r * cell[0] + at[0], c * cell[1] + at[1]
        tiles[top : top + height, left : left + width] = image
        corners.append((top, left))
    return tiles, corners


def show_tiles(ax, tiles: torch.Tensor, cmap: str = "gray", **kwargs):
    """A canvas of `tiled` on an axes without ticks, NaN drawn white."""
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    shown = ax.imshow(tiles.numpy(), cmap=colours, interpolation="nearest", **kwargs)
    ax.axis("off")
    return shown


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
