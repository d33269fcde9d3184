"""The lab's networks as plain nn.Modules. Each constructor is its config's schema (mnist_cnn.config.signature):
an argument's type, default and range in its signature, its meaning in the docstring's Args; the dataset's
image shape and class count come as `input_shape` and `num_classes`. A network of one's own is a class like
these anywhere importable, and a YAML naming it (README, "A network of your own")."""

from __future__ import annotations

from typing import Annotated

import torch
from annotated_types import Ge, Interval
from torch import nn

from mnist_cnn.models.layers import Dropout, FlattenLinear, dense_head, keras_init, pooled

Shape = tuple[int, int, int]  # channels, height, width
Count = Annotated[int, Ge(1)]
Rate = Annotated[float, Interval(ge=0, lt=1)]


class KerasNet(nn.Sequential):
    """Layers in order, initialised as Keras initialises them."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__(*layers)
        self.apply(keras_init)

    def __getitem__(self, index):
        """A layer, or for a slice a plain nn.Sequential of those layers (nn.Sequential would rebuild this
        class from them, which takes arguments, not layers)."""
        if isinstance(index, slice):
            return nn.Sequential(*list(self)[index])
        return super().__getitem__(index)


class BaselineCNN(KerasNet):
    """Part III: Conv 32@3x3 ReLU, Conv 64@3x3 ReLU, MaxPool 2, Dropout 0.25, Dense 128 ReLU, Dropout 0.5,
    Dense 10 -- 1,199,882 parameters.

    Args:
        conv1_channels: filters of the first convolution
        conv2_channels: filters of the second convolution
        kernel_size: convolution kernel size
        pool_size: max-pooling size
        conv_dropout: dropout after the convolutions
        dense_units: units of the hidden dense layer
        dense_dropout: dropout after the hidden dense layer
    """

    def __init__(
        self,
        conv1_channels: Count = 32,
        conv2_channels: Count = 64,
        kernel_size: Count = 3,
        pool_size: Count = 2,
        conv_dropout: Rate = 0.25,
        dense_units: Count = 128,
        dense_dropout: Rate = 0.5,
        *,
        input_shape: Shape,
        num_classes: int,
    ):
        features = nn.Sequential(
            nn.Conv2d(input_shape[0], conv1_channels, kernel_size),
            nn.ReLU(),
            nn.Conv2d(conv1_channels, conv2_channels, kernel_size),
            *pooled(pool_size, nn.ReLU()),
            Dropout(conv_dropout),
        )
        head = dense_head(features, input_shape, [dense_units], "relu", dense_dropout, num_classes)
        super().__init__([*features, *head])


class EluCNN(KerasNet):
    """Part VI's code: two blocks of (Conv 3x3 ELU, Conv 3x3 ELU, MaxPool 2, Dropout 0.25), 32 then 64 channels,
    Dense 256 ELU, Dropout 0.5, Dense 10 -- 329,962 parameters.

    Args:
        block1_channels: filters of the first block's convolutions
        block2_channels: filters of the second block's convolutions
        kernel_size: convolution kernel size
        pool_size: max-pooling size
        conv_dropout: dropout after each block
        dense_units: units of the hidden dense layer
        dense_dropout: dropout after the hidden dense layer
    """

    def __init__(
        self,
        block1_channels: Count = 32,
        block2_channels: Count = 64,
        kernel_size: Count = 3,
        pool_size: Count = 2,
        conv_dropout: Rate = 0.25,
        dense_units: Count = 256,
        dense_dropout: Rate = 0.5,
        *,
        input_shape: Shape,
        num_classes: int,
    ):
        layers, channels = [], input_shape[0]
        for out in (block1_channels, block2_channels):
            layers += [
                nn.Conv2d(channels, out, kernel_size),
                nn.ELU(),
                nn.Conv2d(out, out, kernel_size),
                *pooled(pool_size, nn.ELU()),
                Dropout(conv_dropout),
            ]
            channels = out
        features = nn.Sequential(*layers)
        head = dense_head(features, input_shape, [dense_units], "elu", dense_dropout, num_classes)
        super().__init__([*features, *head])


class ProseCNN(KerasNet):
    """The network part VI's text describes but its code never built: Conv 30@5x5, MaxPool 2, Conv 15@3x3,
    MaxPool 2, Dropout 0.2, Dense 128 ReLU, Dense 50 ReLU, Dense 10 -- 59,933 parameters. ELU in the
    convolutions, ReLU in the dense layers, as the text says.

    Args:
        conv1_channels: filters of the first convolution
        conv1_kernel: kernel size of the first convolution
        conv2_channels: filters of the second convolution
        conv2_kernel: kernel size of the second convolution
        pool_size: max-pooling size
        dropout: dropout after the convolutions
        dense_units: units of each hidden dense layer
    """

    def __init__(
        self,
        conv1_channels: Count = 30,
        conv1_kernel: Count = 5,
        conv2_channels: Count = 15,
        conv2_kernel: Count = 3,
        pool_size: Count = 2,
        dropout: Rate = 0.2,
        dense_units: list[Annotated[int, Ge(1)]] = (128, 50),
        *,
        input_shape: Shape,
        num_classes: int,
    ):
        features = nn.Sequential(
            *two_conv_blocks(
                input_shape[0], (conv1_channels, conv1_kernel), (conv2_channels, conv2_kernel), pool_size, nn.ELU
            ),
            Dropout(dropout),
        )
        head = dense_head(features, input_shape, list(dense_units), "relu", 0.0, num_classes)
        super().__init__([*features, *head])


class SpeedrunCNN(KerasNet):
    """experiment=speedrun's network: tuomaso/train_mnist_fast's (Conv 24@5x5, MaxPool 2, ReLU, Conv 32@3x3,
    MaxPool 2, ReLU, Dense 256 ReLU, Dense 10, no dropout) with 48 filters in the second convolution, which
    scored higher on validation for a slightly longer epoch (docs/performance.md, "The speedrun") --
    321,066 parameters.

    Args:
        conv1_channels: filters of the first convolution
        conv1_kernel: kernel size of the first convolution
        conv2_channels: filters of the second convolution (train_mnist_fast: 32; 48 won on validation)
        conv2_kernel: kernel size of the second convolution
        pool_size: max-pooling size
        dense_units: units of the hidden dense layer
    """

    def __init__(
        self,
        conv1_channels: Count = 24,
        conv1_kernel: Count = 5,
        conv2_channels: Count = 48,
        conv2_kernel: Count = 3,
        pool_size: Count = 2,
        dense_units: Count = 256,
        *,
        input_shape: Shape,
        num_classes: int,
    ):
        features = nn.Sequential(
            *two_conv_blocks(
                input_shape[0], (conv1_channels, conv1_kernel), (conv2_channels, conv2_kernel), pool_size, nn.ReLU
            )
        )
        head = dense_head(features, input_shape, [dense_units], "relu", 0.0, num_classes)
        super().__init__([*features, *head])


class BatchNormCNN(KerasNet):
    """experiment=best's network, after Chris Deotte's Kaggle study of small MNIST CNNs ("How to choose CNN
    architecture MNIST", 2018): per block, two Conv 3x3 and a Conv 5x5 of stride 2 in place of a max-pool,
    each followed by BatchNorm and ReLU, then Dropout; a Conv 4x4 over what is left, Dropout, Dense 10.
    With blocks of 32 and 64 channels and 128 at the end: 325,994 parameters.

    Args:
        block_channels: filters of each block's convolutions, one block per entry
        final_channels: filters of the last convolution, which spans the whole remaining map
        dropout: dropout after each block and before the dense layer
    """

    def __init__(
        self,
        block_channels: list[Annotated[int, Ge(1)]] = (32, 64),
        final_channels: Count = 128,
        dropout: Rate = 0.4,
        *,
        input_shape: Shape,
        num_classes: int,
    ):
        layers, channels = [], input_shape[0]
        for out in block_channels:
            layers += [
                *normalized(channels, out, 3),
                *normalized(out, out, 3),
                *normalized(out, out, 5, stride=2, padding=2),
                Dropout(dropout),
            ]
            channels = out
        blocks = nn.Sequential(*layers).eval()  # one image through BatchNorm: its running statistics, not the batch's
        with torch.no_grad():
            size = blocks(torch.zeros(1, *input_shape)).shape[-2:]
        blocks.train()
        layers += [*normalized(channels, final_channels, tuple(size)), Dropout(dropout)]
        super().__init__([*layers, FlattenLinear(final_channels, num_classes)])


def normalized(in_channels: int, out_channels: int, kernel, **conv) -> list[nn.Module]:
    """Conv (no bias: BatchNorm's shift stands for it), BatchNorm, ReLU."""
    return [nn.Conv2d(in_channels, out_channels, kernel, bias=False, **conv), nn.BatchNorm2d(out_channels), nn.ReLU()]


def two_conv_blocks(
    in_channels: int, conv1: tuple[int, int], conv2: tuple[int, int], pool_size: int, activation: type[nn.Module]
) -> list[nn.Module]:
    """Conv (channels, kernel) conv1, max-pool, activation, then the same with conv2: the features of
    ProseCNN (ELU) and SpeedrunCNN (ReLU)."""
    return [
        nn.Conv2d(in_channels, *conv1),
        *pooled(pool_size, activation()),
        nn.Conv2d(conv1[0], *conv2),
        *pooled(pool_size, activation()),
    ]


# The checkpoints written before a network was named by its import path name it by its class alone
NETWORKS = {cls.__name__: cls for cls in (BaselineCNN, EluCNN, ProseCNN, SpeedrunCNN, BatchNormCNN)}
