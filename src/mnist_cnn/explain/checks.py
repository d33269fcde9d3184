"""Whether the attribution maps (mnist_cnn.explain.attributions) mean something, three ways:

- completeness: Integrated Gradients' maps sum to the logit's change from the blank image (its axiom),
  within the path's discretisation error;
- deletion: blanking the most-attributed pixels lowers the read class's probability more than blanking as
  many random pixels;
- randomisation (Adebayo et al. 2018, Sanity Checks for Saliency Maps): a network with re-initialised
  weights gives clearly different maps, so the maps depend on what was learned, not on the image alone.
  Compared signed: Integrated Gradients multiplies by the input, so their absolute values keep the digit's
  outline whatever the weights (the paper notes this of input-times-gradient methods).

    python -m mnist_cnn.explain.checks outputs/runs/<run> [--digits 300]   # the figures in docs/explain.md
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn
from torchvision.datasets import MNIST

from mnist_cnn.data.datasets import blank_level, default_data_dir, normalize
from mnist_cnn.explain.attributions import attributions
from mnist_cnn.inference.loader import load_network


def completeness(net: nn.Module, x: torch.Tensor, background: float) -> float:
    """The largest completeness error over the images, relative to the largest logit change."""
    with torch.no_grad():
        target = net(x).argmax(dim=1)
        change = net(x).gather(1, target[:, None]) - net(torch.full_like(x, background)).gather(1, target[:, None])
    _, delta = attributions(net, x, target, background)
    return float(delta.abs().max() / change.abs().max())


def deletion(net: nn.Module, x: torch.Tensor, background: float, pixels: int = 40, seed: int = 0) -> dict:
    """The read class's mean probability before, and after blanking its `pixels` most-attributed pixels or as
    many random ones (seeded)."""
    with torch.no_grad():
        probabilities = net(x).softmax(dim=1)
    target = probabilities.argmax(dim=1)
    maps, _ = attributions(net, x, target, background)
    flat = x.flatten(1).clone()
    top = maps.flatten(1).topk(pixels, dim=1).indices
    generator = torch.Generator().manual_seed(seed)
    random = torch.stack([torch.randperm(flat.shape[1], generator=generator)[:pixels] for _ in range(len(x))])

    def after(indices: torch.Tensor) -> float:
        blanked = flat.clone().scatter_(1, indices, background).view_as(x)
        with torch.no_grad():
            return float(net(blanked).softmax(dim=1).gather(1, target[:, None]).mean())

    return {
        "before": float(probabilities.gather(1, target[:, None]).mean()),
        "most_attributed_blanked": after(top),
        "random_blanked": after(random),
        "pixels": pixels,
    }


def randomisation(net: nn.Module, fresh: nn.Module, x: torch.Tensor, background: float) -> dict:
    """The mean correlation, image by image, of the maps of the trained network and of the same network
    re-initialised (`fresh`), each for the class the trained network reads: signed, and of absolute values."""
    with torch.no_grad():
        target = net(x).argmax(dim=1)
    ours, _ = attributions(net, x, target, background)
    theirs, _ = attributions(fresh, x, target, background)
    return {"signed": correlation(ours, theirs), "absolute": correlation(ours.abs(), theirs.abs())}


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return float(((a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))).mean())


def reinitialised(run: str, seed: int = 1) -> nn.Module:
    """The run's network with every layer's parameters drawn afresh (PyTorch's initialisation, seeded)."""
    torch.manual_seed(seed)
    fresh, _ = load_network(run)
    return fresh.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)


def checks(run: str, digits: int, data_dir: str) -> dict:
    net, data = load_network(run)
    background = blank_level(data["normalize"], data["dataset"])
    x = normalize(MNIST(data_dir, train=False).data[:digits], data["normalize"], data["dataset"])
    fresh = reinitialised(run)
    return {
        "digits": digits,
        "completeness_error": completeness(net, x[:50], background),
        "deletion": deletion(net, x, background),
        "randomisation_correlation": randomisation(net, fresh, x, background),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory or checkpoint (MNIST)")
    parser.add_argument("--digits", type=int, default=300)
    parser.add_argument("--data-dir", default=default_data_dir())
    args = parser.parse_args()
    print(json.dumps(checks(args.run, args.digits, args.data_dir), indent=2))


if __name__ == "__main__":
    main()
