"""Matplotlib figures as PNG files: drawn off screen, written atomically (never half a PNG)."""

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
