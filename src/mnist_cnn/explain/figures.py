"""The figures of what a network learned (mnist_cnn.explain.attributions computes what they show): clear at a glance, a
diverging colour map centred at zero wherever a value can be either sign, titles that say what is shown."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

DIVERGING = "RdBu_r"  # red: toward the class, blue: against it, white: zero


def filters_figure(net: nn.Module):
    """The first convolution's kernels, one small image each, on a diverging scale shared by all."""
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    kernels = conv.weight.detach().float().sum(dim=1).cpu().numpy()  # summed over input channels (gray: one)
    columns = min(8, len(kernels))
    rows = -(-len(kernels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows + 0.8), squeeze=False)
    limit = float(np.abs(kernels).max()) or 1.0
    for ax, kernel in zip(axes.flat, kernels):
        image = ax.imshow(kernel, cmap=DIVERGING, vmin=-limit, vmax=limit)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(
        f"First convolution: {len(kernels)} filters of {kernels.shape[1]}x{kernels.shape[2]} "
        "(red adds, blue subtracts)",
        fontsize=10,
    )
    fig.colorbar(image, ax=axes, shrink=0.6, label="weight")
    return fig


def feature_maps_figure(x: torch.Tensor, maps: list[torch.Tensor], labels: list[str], maps_shown: int = 6):
    """For each image (a row), the image, then the first `maps_shown` channels of each block's output (maps:
    mnist_cnn.explain.attributions.feature_maps)."""
    columns = 1 + maps_shown * len(maps)
    fig, axes = plt.subplots(len(x), columns, figsize=(0.9 * columns, 0.95 * len(x) + 0.8), squeeze=False)
    for row in range(len(x)):
        axes[row, 0].imshow(x[row, 0].float().cpu().numpy(), cmap="gray")
        axes[row, 0].set_ylabel(labels[row], rotation=0, labelpad=14, fontsize=9)
        for b, block in enumerate(maps):
            for c in range(min(maps_shown, block.shape[1])):
                axes[row, 1 + b * maps_shown + c].imshow(block[row, c].cpu().numpy(), cmap="viridis")
    for b, block in enumerate(maps):
        axes[0, 1 + b * maps_shown].set_title(
            f"block {b + 1}: {block.shape[2]}x{block.shape[3]}, {maps_shown} of {block.shape[1]} maps",
            fontsize=8,
            loc="left",
        )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=8)
    fig.suptitle("What each convolutional block makes of a digit (bright: strong response)", fontsize=10)
    return fig


def attributions_figure(images: torch.Tensor, maps: torch.Tensor, titles: list[str], heading: str):
    """Each image's attribution map on a diverging scale centred at zero, the digit's outline over it."""
    columns = min(5, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.2 * rows + 0.6), squeeze=False)
    for ax, image, attribution, title in zip(axes.flat, images, maps, titles):
        limit = float(attribution.abs().max()) or 1.0
        shown = ax.imshow(attribution.cpu().numpy(), cmap=DIVERGING, vmin=-limit, vmax=limit)
        ax.contour(
            image.float().cpu(),
            levels=[float(image.min() + 0.5 * (image.max() - image.min()))],
            colors="k",
            linewidths=0.7,
        )
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(heading, fontsize=10)
    fig.colorbar(shown, ax=axes, shrink=0.7, label="toward the class read (red) / against it (blue)", ticks=[])
    return fig


def explained_figure(image: np.ndarray, attribution: torch.Tensor, top: list[tuple[str, float]], title: str):
    """One image: as the network reads it, where it looks (red toward the class it reads, blue against),
    and its three likeliest classes."""
    fig, (read, looks, likely) = plt.subplots(1, 3, figsize=(8.4, 3.0), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    read.imshow(image, cmap="gray", vmin=0, vmax=255)
    read.set_title("what the network reads (28x28)", fontsize=8)
    limit = float(attribution.abs().max()) or 1.0
    shown = looks.imshow(attribution.cpu().numpy(), cmap=DIVERGING, vmin=-limit, vmax=limit)
    looks.contour(image, levels=[127], colors="k", linewidths=0.7)
    looks.set_title(f"where it looks for '{top[0][0]}'", fontsize=8)
    for ax in (read, looks):
        ax.set_axis_off()
    fig.colorbar(shown, ax=looks, shrink=0.8, ticks=[], label="toward (red) / against (blue)")
    labels, probabilities = zip(*top)
    likely.barh(range(len(top))[::-1], probabilities, color=["#c0392b"] + ["#95a5a6"] * (len(top) - 1))
    likely.set_yticks(range(len(top))[::-1], labels)
    likely.set_xlim(0, 1)
    likely.set_title("its three likeliest classes", fontsize=8)
    for i, p in zip(range(len(top))[::-1], probabilities):
        likely.text(min(p + 0.02, 0.8), i, f"{p:.3f}", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
