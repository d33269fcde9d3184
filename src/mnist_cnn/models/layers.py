"""Layers the networks are built from: the lab's Keras layers as faster PyTorch equivalents with the
same maths (keras_order gives the stock modules they stand for), and Keras's initialisation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Dropout(nn.Dropout):
    """nn.Dropout whose mask, in training on CPU, comes from 16 random bits per element, drawn as 64-bit words.

    Written because torch's CPU dropout draws one random number per element through bernoulli_: in the
    baseline's bf16 step (batch 256) its 2.4 million-element mask took about a quarter of the step, more
    than all forward convolutions; 64-bit words, a comparison and a multiply take a fifth of that
    (docs/performance.md, "The CPU step"). The maths is nn.Dropout's: elements kept with probability
    1 - p (p rounded to a multiple of 2^-16) and scaled by 1 / (1 - p). The random stream differs from
    torch's; it comes from torch's default generator, so a seeded run repeats and resumes bit for bit.
    Elsewhere (CUDA, evaluation) it is nn.Dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        bits = words.view(torch.int16)[: x.numel()]
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            n, c, h, w = x.shape  # a mask in the input's own layout: no layout conversion, here or downstream
            bits = bits.view(n, h, w, c).permute(0, 3, 1, 2)
        else:
            bits = bits.view(x.shape)
        keep = bits >= round(self.p * 2**16) - 2**15  # true with probability 1 - p
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


class FlattenLinear(nn.Linear):
    """nn.Flatten then nn.Linear, in one layer with nn.Linear's parameters and maths.

    On a channels_last input it reads the features in memory order, and permutes the weight's
    columns to match, in the same copy that casts the weight to the input's dtype (autocast copies it
    anyway). Written because flattening a channels_last tensor copies it into NCHW order, and the
    gradient coming back in that order made max-pool's backward convert its layout: the two copies
    took longer than max-pool itself in the baseline's bf16 step (docs/performance.md, "The CPU step").
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x.flatten(1))
        n, c, h, w = x.shape
        weight = torch.empty(self.out_features, h, w, c, dtype=x.dtype, device=x.device)
        weight.copy_(self.weight.view(-1, c, h, w).permute(0, 2, 3, 1))  # one copy: layout and dtype
        return F.linear(x.permute(0, 2, 3, 1).reshape(n, -1), weight.view(self.out_features, -1), self.bias)


ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU}


def keras_init(module: nn.Module) -> None:
    """Keras's defaults: Glorot-uniform weights, zero biases (PyTorch's differ)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def pooled(pool_size: int, activation: nn.Module) -> list[nn.Module]:
    """Keras's activation-then-max-pool, computed as max-pool then activation: the same values, since a
    non-decreasing activation commutes with max, on a quarter of the elements, forward and backward.
    The gradient is the same too, up to which of two equal maxima receives it: ReLU makes no new ties
    among the values that pass a gradient, a bf16 ELU can round two negative inputs to one value."""
    return [nn.MaxPool2d(pool_size), activation]


def dense_head(
    features: nn.Module,
    input_shape: tuple[int, int, int],
    units: list[int],
    activation: str,
    dropout: float,
    num_classes: int,
) -> list[nn.Module]:
    """Dense layers after `features` (flattened by the first), sized from its output on one image of
    `input_shape` (channels, height, width); ends in `num_classes` logits."""
    with torch.no_grad():
        width = features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    layers = []
    for i, n in enumerate(units):
        layers += [(FlattenLinear if i == 0 else nn.Linear)(width, n), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(Dropout(dropout))
        width = n
    return layers + [(FlattenLinear if not units else nn.Linear)(width, num_classes)]


def keras_order(net: nn.Sequential) -> nn.Sequential:
    """`net`'s layers as Keras orders them, in stock PyTorch modules that share its parameters: activation
    then max-pool, nn.Dropout, nn.Flatten then nn.Linear. What the faster order computes, for the tests
    and for the benchmark's plain loop."""
    layers, modules = [], list(net)
    for i, layer in enumerate(modules):
        if isinstance(layer, nn.MaxPool2d):
            layers += [modules[i + 1], layer]
        elif i and isinstance(modules[i - 1], nn.MaxPool2d):
            continue  # the activation, placed before its pool above
        elif isinstance(layer, FlattenLinear):
            linear = nn.Linear(layer.in_features, layer.out_features)
            linear.weight, linear.bias = layer.weight, layer.bias
            layers += [nn.Flatten(), linear]
        elif isinstance(layer, Dropout):
            layers.append(nn.Dropout(layer.p).train(layer.training))
        else:
            layers.append(layer)
    return nn.Sequential(*layers)
