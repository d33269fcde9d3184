"""The datasets a run can train on: one entry each, with what differs between them. A new dataset is an
entry here plus its files' fetch and checksums (mnist_cnn.data.fetch); the networks take their input
shape and class count from here, the data module its files and normalisation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from mnist_cnn.data.fetch import ensure_fashion_mnist, ensure_mnist

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Dataset:
    """title; folder: torchvision's dataset class of that name reads the files (mnist_cnn.data.module); ensure:
    the files' source chain; mean and std of the training images' pixels (x / 255); the class names;
    shape: (channels, height, width) of an image; train_images: the size of the training set."""

    title: str
    folder: str
    ensure: Callable[[str], dict]
    mean: float
    std: float
    classes: tuple[str, ...]
    shape: tuple[int, int, int] = (1, 28, 28)
    train_images: int = 60_000


DATASETS = {
    "mnist": Dataset("MNIST", "MNIST", ensure_mnist, 0.1307, 0.3081, tuple(str(d) for d in range(10))),
    # torchvision.datasets.FashionMNIST.classes (tests/test_fashion.py compares them)
    "fashion_mnist": Dataset(
        "Fashion-MNIST",
        "FashionMNIST",
        ensure_fashion_mnist,
        0.2860,
        0.3530,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}
NORMALIZE = ("standard", "unit")
SPLITS = ("random", "tail")  # how the validation images are taken (mnist_cnn.data.module.split_indices)


def default_data_dir() -> str:
    return os.environ.get("MNIST_CNN_DATA") or os.path.expanduser("~/.cache/mnist_cnn")


def normalize(images: torch.Tensor, mode: str, dataset: str = "mnist") -> torch.Tensor:
    """uint8 (N, height, width) -> float32 (N, 1, height, width), the whole tensor at once. (Tensor methods
    only: this registry is imported by `--help`, which must not wait for torch.)"""
    x = images.unsqueeze(1).float().div_(255)
    if mode == "standard":
        return x.sub_(DATASETS[dataset].mean).div_(DATASETS[dataset].std)
    if mode == "unit":  # the lab's x / 255
        return x
    raise ValueError(f"normalize={mode!r}: allowed values are {', '.join(NORMALIZE)}")


def blank_level(mode: str, dataset: str = "mnist") -> float:
    """What a blank pixel (gray level 0) becomes after `normalize`, computed as normalize computes it."""
    import torch  # here, not above: `--help` imports this registry and must not wait for torch

    return float(normalize(torch.zeros(1, 1, dtype=torch.uint8), mode, dataset).flatten()[0])
