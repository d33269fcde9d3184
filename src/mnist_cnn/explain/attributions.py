"""What a trained network learned: its first convolution's filters, what each convolutional block makes
of a digit, and where it looks when it decides (Captum's Integrated Gradients against a blank image:
the attributions sum to the logit's change from that image, which a test checks, so each pixel's share
is a share of the decision). For a run's files, mnist-explain and the demo; the figures: mnist_cnn.explain.figures."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn

from mnist_cnn.data.datasets import blank_level, normalize
from mnist_cnn.explain.figures import attributions_figure, feature_maps_figure, filters_figure

STEPS = 32  # Integrated Gradients' path steps (Gauss-Legendre): completeness holds to under 1% of the logit change


def leaf_calls(net: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """(module, its input, its output) for each call of a module without submodules while `net` reads x, in
    the order of the calls: forward hooks, which see any nn.Module, whatever its forward does."""
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: calls.append((m, args[0] if args else None, out)))
        for m in net.modules()
        if next(m.children(), None) is None
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def last_hidden(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the network's last layer with weights reads for the images x: its last hidden layer, found on one
    image, then read for all of them by a hook on that layer alone."""
    last = [m for m, _, _ in leaf_calls(net, x[:1]) if next(m.parameters(), None) is not None][-1]
    read = []
    hook = last.register_forward_pre_hook(lambda m, args: read.append(args[0]))
    try:
        with torch.no_grad():
            net(x)
    finally:
        hook.remove()
    return read[0]


def feature_maps(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Each block's output for the images x (N, C, H, W): a list of (N, channels, h, w), in block order. A block
    ends where the maps are next made at least twice smaller (a pooling or a strided layer): its last output at
    its size, after the activation that follows the pool. A network that never shrinks them so: the last output
    at each size."""
    maps = [out for _, _, out in leaf_calls(net, x) if isinstance(out, torch.Tensor) and out.dim() == 4]
    sizes = [m.shape[-1] for m in maps]
    ends = [i for i in range(len(maps)) if i + 1 == len(maps) or sizes[i + 1] != sizes[i]]
    starts = [0] + [i + 1 for i in ends[:-1]]
    pooled = [end for start, end in zip(starts, ends) if start and sizes[start - 1] >= 2 * sizes[start]]
    return [maps[i].float() for i in (pooled or ends)]


def blank(x: torch.Tensor, background: float) -> torch.Tensor:
    """The baseline: an image with no stroke, in the network's input units (`background` is what a 0 gray
    level normalises to)."""
    return torch.full_like(x, background)


def attributions(
    net: nn.Module, x: torch.Tensor, target: torch.Tensor, background: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients of each image's `target` logit, against the blank image: (N, H, W) maps and each
    map's completeness error (its sum minus the logit change)."""
    ig = IntegratedGradients(net)
    maps, delta = ig.attribute(
        x,
        baselines=blank(x, background),
        target=target,
        n_steps=STEPS,
        internal_batch_size=1024,
        return_convergence_delta=True,
    )
    return maps.sum(dim=1).detach(), delta.detach()


def run_figures(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, mistakes: dict, classes: list[str], background: float
) -> dict:
    """A tested run's pictures of its network: its filters; each block's maps for the first test digit of
    each class; where it looks for its 10 most confident mistakes and for one digit of each class it reads
    right. x, y: the test set (normalised images, labels)."""
    net = net.eval()
    device = next(net.parameters()).device
    labels = y[:200].cpu()  # MNIST's and Fashion-MNIST's first 200 test images hold every class
    first = [int((labels == c).nonzero()[0]) for c in range(len(classes)) if (labels == c).any()]
    with torch.no_grad():
        read = net(x[:200].to(device).float()).argmax(dim=1).cpu()
    right = [
        int(((labels == c) & (read == c)).nonzero()[0])
        for c in range(len(classes))
        if ((labels == c) & (read == c)).any()
    ]
    wrong = mistakes["images"][:10].unsqueeze(1).to(x.dtype) if mistakes["true"] else x[:0].cpu()
    shown = torch.cat([wrong.to(device).float(), x[right].to(device).float()])
    target = torch.tensor(mistakes["predicted"][: len(wrong)] + [int(read[i]) for i in right], device=device)
    figures = {
        "filters": filters_figure(net),
        "feature_maps": feature_maps_figure(
            x[first], feature_maps(net, x[first].to(device).float()), [classes[c] for c in labels[first]]
        ),
    }
    if len(shown):
        maps, _ = attributions(net, shown, target, background)
        titles = [
            f"{classes[t]} read as {classes[p]} ({q:.2f})"
            for t, p, q in zip(mistakes["true"], mistakes["predicted"], mistakes["probability"])
        ][: len(wrong)] + [f"{classes[int(read[i])]}, read right" for i in right]
        figures["attributions"] = attributions_figure(
            shown[:, 0],
            maps,
            titles,
            f"Where the network looks (Integrated Gradients from a blank image): its "
            f"{len(wrong)} most confident mistakes, then one right answer per class",
        )
    return figures


def write_projector(
    writer, net: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[str], step: int, count: int = 1000
) -> None:
    """The last hidden layer of the first `count` test digits for TensorBoard's Projector (PCA, t-SNE), each
    point labelled with its class and shown as its digit."""
    device = next(net.parameters()).device
    images = x[:count].to(device).float()
    hidden = last_hidden(net.eval(), images).flatten(1).float().cpu()
    shown = images.cpu()
    shown = (shown - shown.min()) / (shown.max() - shown.min())
    writer.add_embedding(
        hidden,
        metadata=[classes[int(c)] for c in y[:count].cpu()],
        label_img=shown,
        global_step=step,
        tag="last_hidden_layer",
    )


def explained(net: nn.Module, data: dict, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """For uint8 (N, 28, 28) images: their class probabilities, and (N, 2, H, W) attribution maps of the class
    read and of the runner-up."""
    x = normalize(torch.from_numpy(images), data["normalize"], data["dataset"])
    with torch.no_grad():
        probabilities = net(x).softmax(dim=1)
    first, second = probabilities.topk(2, dim=1).indices.unbind(dim=1)
    maps, _ = attributions(
        net, torch.cat([x, x]), torch.cat([first, second]), blank_level(data["normalize"], data["dataset"])
    )
    return probabilities, torch.stack(maps.chunk(2), dim=1)
