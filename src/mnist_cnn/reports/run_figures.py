"""The figures of a run's report: the lab's part II (the first training images), its learning curves, and
part V (the test's confusion matrix and its most confident mistakes); written by mnist_cnn.reports.run_files."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator
from torchmetrics.utilities.plot import plot_confusion_matrix

from mnist_cnn.figures import laid_out, show_tiles, tiled

STEPS_DRAWN_UP_TO = 5  # epochs: a longer run's learning curves are its epochs alone


def samples_figure(images: torch.Tensor, labels: torch.Tensor | None = None, classes: list[str] | None = None):
    """Part II: the first 200 training images, 10 rows of 20, each under its label where given, as one tiled
    image (200 subplots, as the lab draws it, took seconds). Class names longer than a digit are numbered,
    the numbers named in the title."""
    count = min(200, len(images))
    label = 12 if labels is not None else 0  # pixels above each image for its label
    tiles, corners = tiled(images[:count].cpu().float(), columns=20, cell=(28 + label, 34), at=(label, 3))
    height = 13 * tiles.shape[0] / tiles.shape[1]
    fig, ax = plt.subplots(figsize=(13, height + 0.6), dpi=100)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=height / (height + 0.6))
    show_tiles(ax, tiles)
    named = classes is not None and max(len(c) for c in classes) <= 2
    if labels is not None:
        for (top, left), y in zip(corners, labels[:count].tolist()):
            ax.text(left + 14, top - 1.5, classes[y] if named else str(y), ha="center", va="bottom", fontsize=8)
    key = "" if named or classes is None else ": " + ", ".join(f"{i} {c}" for i, c in enumerate(classes))
    fig.suptitle(
        f"the first {count} training images{' and their labels' if labels is not None else ''}{key}",
        fontsize=10 if key else 12,
    )
    return laid_out(fig)


def learning_curves_figure(history: list[dict], steps: list[dict] | None = None):
    """Loss and accuracy by epoch, for training and validation; a run of few epochs also draws its training
    loss at each logged step (History.steps), so that one epoch is a curve and not a dot. Epochs are whole."""
    epochs = [h["epoch"] for h in history]
    few = len(epochs) <= STEPS_DRAWN_UP_TO
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    if steps and few:
        loss_ax.plot([s["epoch"] for s in steps], [s["train_loss"] for s in steps], "-", color="C0", alpha=0.45,
                     linewidth=1, label=f"train, each logged step ({len(steps)})")  # fmt: skip
    for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", color="C0", label="train, epoch")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", color="C1", label="validation, epoch")
        ax.set_xlabel("epoch")
        ax.set_xlim(0 if few else None, max(epochs, default=1) + 0.1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("learning curves")
    return fig


def confusion_figure(report: dict, classes: list[str]):
    """Part V: the test set's confusion matrix, each cell's count written in it, coloured on a logarithmic
    scale with its colour bar: on a linear one the diagonal (about a thousand images a class) takes the whole
    scale and every mistake looks alike. A cell with no image is left white. torchmetrics draws it; the
    counts are written here, in the colour that reads on the new scale."""
    matrix = torch.tensor(report["confusion_matrix"])
    fig, ax = plot_confusion_matrix(
        matrix, add_text=False, labels=[c.replace(" ", "\n").replace("/", "/\n") for c in classes]
    )
    fig.set_size_inches(8.5, 7)
    image = ax.images[0]
    image.set_cmap(plt.get_cmap("viridis").with_extremes(bad="white"))
    image.set_norm(LogNorm(vmin=1, vmax=max(2, int(matrix.max()))))
    for (row, column), count in np.ndenumerate(matrix.numpy()):
        if count:
            red, green, blue, _ = image.cmap(image.norm(count))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(column, row, str(count), ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.tick_params(axis="x", labelrotation=0, labelsize=9)
    ax.tick_params(axis="y", labelrotation=0, labelsize=9)
    fig.colorbar(image, ax=ax, label="test images (logarithmic scale)")
    ax.set_title("test set confusion matrix")
    return fig


def misclassified_figure(mistakes: dict, classes: list[str]):
    """The tested checkpoint's wrong answers, most confident first, 10 to a row, each under its label:
    one tiled image with text on it (one subplot each, 100 of them, took seconds to lay out)."""
    count = len(mistakes["true"])
    two_lines = max(len(c) for c in classes) > 2  # Fashion-MNIST's names
    label = 22 if two_lines else 12  # pixels above each image for its label
    tiles, corners = tiled(mistakes["images"][:count], columns=10, cell=(28 + label, 34), at=(label, 3))
    height = 13 * tiles.shape[0] / tiles.shape[1]
    fig, ax = plt.subplots(figsize=(13, height + 0.6), dpi=100)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=height / (height + 0.6))  # the title just above
    for i, (top, left) in enumerate(corners):
        title = (
            f"{classes[mistakes['true'][i]]} → {classes[mistakes['predicted'][i]]} ({mistakes['probability'][i]:.2f})"
        )
        ax.text(
            left + 14,
            top - 1.5,
            title.replace(" → ", " →\n") if two_lines else title,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    show_tiles(ax, tiles)
    if count == 0:
        fig.text(0.5, 0.5, "no test image was misclassified", ha="center")
    fig.suptitle(f"misclassified test images, most confident first ({count} shown): true → predicted (probability)")
    return laid_out(fig)
