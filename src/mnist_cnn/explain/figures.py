"""The figures of what a network learned (mnist_cnn.explain.attributions computes what they show): clear at a glance, a
diverging colour map centred at zero wherever a value can be either sign, titles that say what is shown."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from mnist_cnn.figures import show_tiles, tiled  # noqa: E402

DIVERGING = "RdBu_r"  # red: toward the class, blue: against it, white: zero


def filters_figure(net: nn.Module):
    """The first convolution's kernels, tiled on one canvas, on a diverging scale shared by all."""
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    kernels = conv.weight.detach().float().sum(dim=1).cpu()  # summed over input channels (gray: one)
    columns = min(8, len(kernels))
    rows = -(-len(kernels) // columns)
    size = kernels.shape[1]
    tiles, _ = tiled(kernels, columns, cell=(size + 1, size + 1), at=(0, 0))
    fig, ax = plt.subplots(figsize=(1.1 * columns + 1.2, 1.1 * rows + 0.8))
    limit = float(kernels.abs().max()) or 1.0
    image = show_tiles(ax, tiles[:-1, :-1], cmap=DIVERGING, vmin=-limit, vmax=limit)
    ax.set_title(
        f"First convolution: {len(kernels)} filters of {size}x{kernels.shape[2]} (red adds, blue subtracts)",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, shrink=0.8, label="weight")
    return fig


def each_scaled(maps: torch.Tensor) -> torch.Tensor:
    """(N, h, w) maps, each scaled from its own lowest value (0) to its highest (1), in float32 on the host."""
    low = maps.flatten(1).min(dim=1).values[:, None, None]
    high = maps.flatten(1).max(dim=1).values[:, None, None]
    return ((maps - low) / (high - low).clamp_min(1e-12)).float().cpu()


def coloured(maps: torch.Tensor, cmap: str, size: int) -> torch.Tensor:
    """(N, h, w) maps, each scaled to its own range, as (N, size, size, 3) colours, enlarged without smoothing."""
    scaled = F.interpolate(each_scaled(maps)[:, None], size=(size, size), mode="nearest")[:, 0]
    return torch.from_numpy(plt.get_cmap(cmap)(scaled.numpy())[..., :3]).float()


def feature_maps_figure(x: torch.Tensor, maps: list[torch.Tensor], labels: list[str], maps_shown: int = 6):
    """For each image (a row), the image, then the first `maps_shown` channels of each block's output (maps:
    mnist_cnn.explain.attributions.feature_maps), each on its own scale, on one canvas."""
    size = x.shape[-1]
    shown = [block[:, :maps_shown].float().cpu() for block in maps]
    row = [coloured(x[:, 0].float().cpu(), "gray", size)[:, None]]
    row += [coloured(block.flatten(0, 1), "viridis", size).unflatten(0, block.shape[:2]) for block in shown]
    cells = torch.cat(row, dim=1)  # (images, 1 + maps, size, size, 3)
    columns = cells.shape[1]
    gap, label = 2, 14  # pixels between maps, and above the first row for the block titles
    tiles, corners = tiled(cells.flatten(0, 1), columns, cell=(size + gap, size + gap), at=(0, 0))
    tiles = torch.cat([torch.full((label, *tiles.shape[1:]), float("nan")), tiles])
    fig, ax = plt.subplots(figsize=(0.55 * columns + 0.8, 0.6 * len(x) + 0.8))
    ax.imshow(torch.nan_to_num(tiles, nan=1.0).numpy(), interpolation="nearest")
    ax.axis("off")
    ax.text(size / 2, label - 2, "input", ha="center", va="bottom", fontsize=8)
    column = 1
    for b, block in enumerate(shown):
        ax.text(
            column * (size + gap),
            label - 2,
            f"block {b + 1}: {maps[b].shape[2]}x{maps[b].shape[3]}, {block.shape[1]} of {maps[b].shape[1]} maps",
            ha="left",
            va="bottom",
            fontsize=8,
        )
        column += block.shape[1]
    for r, text in enumerate(labels):
        ax.text(-3, label + r * (size + gap) + size / 2, text, ha="right", va="center", fontsize=9)
    ax.set_title("What each convolutional block makes of a digit (bright: strong response)", fontsize=10, pad=4)
    return fig


def attributions_figure(images: torch.Tensor, maps: torch.Tensor, titles: list[str], heading: str):
    """Each image's attribution map, scaled by its own strongest pixel, on a diverging scale centred at zero, the
    digit's outline over it; one canvas."""
    columns = min(5, len(images))
    size = images.shape[-1]
    label = 10  # pixels above each map for its title
    limits = maps.flatten(1).abs().max(dim=1).values.clamp_min(1e-12)[:, None, None]
    tiles, corners = tiled((maps / limits).float().cpu(), columns, cell=(size + label, size + 4), at=(label, 2))
    outlines, _ = tiled(each_scaled(images), columns, cell=(size + label, size + 4), at=(label, 2))
    rows = tiles.shape[0] // (size + label)
    fig, ax = plt.subplots(figsize=(2.0 * columns + 1.0, 2.2 * rows + 0.6))
    shown = show_tiles(ax, tiles, cmap=DIVERGING, vmin=-1, vmax=1)
    ax.contour(np.ma.masked_invalid(outlines.numpy()), levels=[0.5], colors="k", linewidths=0.7)
    for (top, left), title in zip(corners, titles):
        ax.text(left + size / 2, top - 1, title, ha="center", va="bottom", fontsize=8)
    ax.set_title(heading, fontsize=10)
    fig.colorbar(
        shown, ax=ax, shrink=0.7, ticks=[-1, -0.5, 0, 0.5, 1],
        label="share of the map's strongest pixel: toward the class read (red) / against it (blue)",
    )  # fmt: skip
    return fig


def explained_figure(image: np.ndarray, maps: list[torch.Tensor], top: list[tuple[str, float]], title: str):
    """One image: as the network reads it; where it looks for the class it reads (red toward that class, blue
    against), and where the network hesitated (maps holds two), for the runner-up beside it, on one scale in the
    logit's units; and its three likeliest classes."""
    panels = 2 + len(maps)
    fig, axes = plt.subplots(
        1, panels, figsize=(2.9 * panels, 3.0), gridspec_kw={"width_ratios": [1] * (panels - 1) + [1.1]}
    )
    read, likely = axes[0], axes[-1]
    read.imshow(image, cmap="gray", vmin=0, vmax=255)
    read.set_title("what the network reads (28x28)", fontsize=8)
    limit = max(float(m.abs().max()) for m in maps) or 1.0
    for ax, attribution, (label, _) in zip(axes[1:-1], maps, top):
        shown = ax.imshow(attribution.cpu().numpy(), cmap=DIVERGING, vmin=-limit, vmax=limit)
        ax.contour(image, levels=[127], colors="k", linewidths=0.7)
        ax.set_title(f"where it looks for '{label}'", fontsize=8)
    for ax in axes[:-1]:
        ax.set_axis_off()
    bar = fig.colorbar(shown, ax=list(axes[1:-1]), shrink=0.8)
    bar.set_label("toward (red) / against (blue) the class:\nits logit's change, per pixel", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    labels, probabilities = zip(*top)
    likely.barh(range(len(top))[::-1], probabilities, color=["#c0392b"] + ["#95a5a6"] * (len(top) - 1))
    likely.set_yticks(range(len(top))[::-1], labels)
    likely.set_xlim(0, 1)
    likely.set_title("its three likeliest classes", fontsize=8)
    for i, p in zip(range(len(top))[::-1], probabilities):
        likely.text(min(p + 0.02, 0.8), i, f"{p:.3f}", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.55)  # room for the colour bar's label before the bars
    return fig
