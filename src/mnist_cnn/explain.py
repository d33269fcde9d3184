"""What a trained network learned: its first convolution's filters, what each convolutional block makes
of a digit, and where it looks when it decides (Captum's Integrated Gradients against a blank image:
the attributions sum to the logit's change from that image, which a test checks, so each pixel's share
is a share of the decision). Computations and their figures, for a run's files, mnist-explain and the demo."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum.attr import IntegratedGradients  # noqa: E402
from torch import nn  # noqa: E402

STEPS = 64  # Integrated Gradients' path steps: completeness holds to about 1% of the logit change here
DIVERGING = "RdBu_r"  # red: toward the class, blue: against it, white: zero


def block_ends(net: nn.Sequential) -> list[int]:
    """Where each convolutional block ends: after the activation that follows each max-pool (the lab's
    blocks), or for a network without pooling after each convolution's activation."""
    layers = list(net)
    ends = [i + 1 for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d) and i + 1 < len(layers)]
    if not ends:
        ends = [i + 1 for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d) and i + 1 < len(layers)]
    return [end + 1 for end in ends]


@torch.no_grad()
def feature_maps(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Each block's output for the images x (N, C, H, W): a list of (N, channels, h, w), in block order."""
    out, maps, done = x, [], 0
    for end in block_ends(net):
        out = net[done:end](out)
        maps.append(out.float())
        done = end
    return maps


def blank(x: torch.Tensor, background: float) -> torch.Tensor:
    """The baseline: an image with no stroke, in the network's input units (`background` is what a 0 gray
    level normalises to)."""
    return torch.full_like(x, background)


def attributions(net: nn.Module, x: torch.Tensor, target: torch.Tensor, background: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients of each image's `target` logit, against the blank image: (N, H, W) maps and each
    map's completeness error (its sum minus the logit change)."""
    ig = IntegratedGradients(net)
    maps, delta = ig.attribute(x, baselines=blank(x, background), target=target, n_steps=STEPS,
                               internal_batch_size=1024, return_convergence_delta=True)
    return maps.sum(dim=1).detach(), delta.detach()


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
    fig.suptitle(f"First convolution: {len(kernels)} filters of {kernels.shape[1]}x{kernels.shape[2]} "
                 "(red adds, blue subtracts)", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.6, label="weight")
    return fig


def feature_maps_figure(net: nn.Sequential, x: torch.Tensor, labels: list[str], maps_shown: int = 6):
    """For each image (a row), the image, then the first `maps_shown` channels of each block's output."""
    maps = feature_maps(net, x)
    columns = 1 + maps_shown * len(maps)
    fig, axes = plt.subplots(len(x), columns, figsize=(0.9 * columns, 0.95 * len(x) + 0.8), squeeze=False)
    for row in range(len(x)):
        axes[row, 0].imshow(x[row, 0].float().cpu(), cmap="gray")
        axes[row, 0].set_ylabel(labels[row], rotation=0, labelpad=14, fontsize=9)
        for b, block in enumerate(maps):
            for c in range(min(maps_shown, block.shape[1])):
                axes[row, 1 + b * maps_shown + c].imshow(block[row, c].cpu(), cmap="viridis")
    for b, block in enumerate(maps):
        axes[0, 1 + b * maps_shown].set_title(f"block {b + 1}: {block.shape[2]}x{block.shape[3]}, "
                                              f"{maps_shown} of {block.shape[1]} maps", fontsize=8, loc="left")
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
        shown = ax.imshow(attribution.cpu(), cmap=DIVERGING, vmin=-limit, vmax=limit)
        ax.contour(image.float().cpu(), levels=[float(image.min() + 0.5 * (image.max() - image.min()))],
                   colors="k", linewidths=0.7)
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(heading, fontsize=10)
    fig.colorbar(shown, ax=axes, shrink=0.7, label="toward the class read (red) / against it (blue)", ticks=[])
    return fig


def run_figures(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, mistakes: dict, classes: list[str],
                background: float) -> dict:
    """A tested run's pictures of its network: its filters; each block's maps for the first test digit of
    each class; where it looks for its 10 most confident mistakes and for one digit of each class it reads
    right. x, y: the test set (normalised images, labels)."""
    net = net.eval()
    device = next(net.parameters()).device
    labels = y[:1000].cpu()
    first = [int((labels == c).nonzero()[0]) for c in range(len(classes)) if (labels == c).any()]
    with torch.no_grad():
        read = net(x[:1000].to(device).float()).argmax(dim=1).cpu()
    right = [int(((labels == c) & (read == c)).nonzero()[0]) for c in range(len(classes)) if ((labels == c) & (read == c)).any()]
    wrong = mistakes["images"][:10].unsqueeze(1).to(x.dtype) if mistakes["true"] else x[:0].cpu()
    shown = torch.cat([wrong.to(device).float(), x[right].to(device).float()])
    target = torch.tensor(mistakes["predicted"][:len(wrong)] + [int(read[i]) for i in right], device=device)
    figures = {"filters": filters_figure(net),
               "feature_maps": feature_maps_figure(net, x[first].to(device).float(), [classes[c] for c in labels[first]])}
    if len(shown):
        maps, _ = attributions(net, shown, target, background)
        titles = ([f"{classes[t]} read as {classes[p]} ({q:.2f})" for t, p, q in
                   zip(mistakes["true"], mistakes["predicted"], mistakes["probability"])][:len(wrong)]
                  + [f"{classes[int(read[i])]}, read right" for i in right])
        figures["attributions"] = attributions_figure(
            shown[:, 0], maps, titles, f"Where the network looks (Integrated Gradients from a blank image): its "
            f"{len(wrong)} most confident mistakes, then one right answer per class")
    return figures


def write_projector(writer, net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, classes: list[str], step: int,
                    count: int = 2000) -> None:
    """The last hidden layer of the first `count` test digits for TensorBoard's Projector (PCA, t-SNE), each
    point labelled with its class and shown as its digit."""
    device = next(net.parameters()).device
    images = x[:count].to(device).float()
    with torch.no_grad():
        hidden = net.eval()[:-1](images).flatten(1).float().cpu()
    shown = images.cpu()
    shown = (shown - shown.min()) / (shown.max() - shown.min())
    writer.add_embedding(hidden, metadata=[classes[int(c)] for c in y[:count].cpu()], label_img=shown,
                         global_step=step, tag="last_hidden_layer")
