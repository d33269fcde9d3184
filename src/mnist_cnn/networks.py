"""The lab's networks as plain nn.Modules: layers from their own few arguments, and the shape of the
dataset's images and its class count (mnist_cnn.data.DATASETS). mnist_cnn.classifier.Classifier trains
whichever it is given; a new network is a class here (or anywhere importable), its schema in
mnist_cnn.config.schema and its YAML in conf/model/."""

from __future__ import annotations

from torch import nn

from mnist_cnn.layers import Dropout, dense_head, keras_init, pooled

Shape = tuple[int, int, int]  # channels, height, width


class KerasNet(nn.Sequential):
    """Layers in order, initialised as Keras initialises them. `arguments` are what rebuild the network
    (a checkpoint keeps them beside its weights, mnist_cnn.saved)."""

    def __init__(self, layers: list[nn.Module], arguments: dict):
        super().__init__(*layers)
        self.arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()
                          if k not in ("self", "__class__")}
        self.apply(keras_init)

    def __getitem__(self, index):
        """A layer, or for a slice a plain nn.Sequential of those layers (nn.Sequential would rebuild this
        class from them, which takes arguments, not layers)."""
        if isinstance(index, slice):
            return nn.Sequential(*list(self)[index])
        return super().__getitem__(index)


class BaselineCNN(KerasNet):
    """Part III: Conv 32@3x3 ReLU, Conv 64@3x3 ReLU, MaxPool 2, Dropout 0.25, Dense 128 ReLU,
    Dropout 0.5, Dense 10 -- 1,199,882 parameters. Defaults and ranges: mnist_cnn.config.schema.BaselineConfig."""

    def __init__(self, *, conv1_channels: int, conv2_channels: int, kernel_size: int, pool_size: int,
                 conv_dropout: float, dense_units: int, dense_dropout: float, input_shape: Shape, num_classes: int):
        arguments = dict(locals())
        features = nn.Sequential(
            nn.Conv2d(input_shape[0], conv1_channels, kernel_size), nn.ReLU(),
            nn.Conv2d(conv1_channels, conv2_channels, kernel_size),
            *pooled(pool_size, nn.ReLU()), Dropout(conv_dropout),
        )
        head = dense_head(features, input_shape, [dense_units], "relu", dense_dropout, num_classes)
        super().__init__([*features, *head], arguments)


class EluCNN(KerasNet):
    """Part VI's code: two blocks of (Conv 3x3 ELU, Conv 3x3 ELU, MaxPool 2, Dropout 0.25), 32 then 64 channels,
    Dense 256 ELU, Dropout 0.5, Dense 10 -- 329,962 parameters. Arguments: mnist_cnn.config.schema.EluConfig."""

    def __init__(self, *, block1_channels: int, block2_channels: int, kernel_size: int, pool_size: int,
                 conv_dropout: float, dense_units: int, dense_dropout: float, input_shape: Shape, num_classes: int):
        arguments = dict(locals())
        layers, channels = [], input_shape[0]
        for out in (block1_channels, block2_channels):
            layers += [nn.Conv2d(channels, out, kernel_size), nn.ELU(),
                       nn.Conv2d(out, out, kernel_size), *pooled(pool_size, nn.ELU()), Dropout(conv_dropout)]
            channels = out
        features = nn.Sequential(*layers)
        head = dense_head(features, input_shape, [dense_units], "elu", dense_dropout, num_classes)
        super().__init__([*features, *head], arguments)


class ProseCNN(KerasNet):
    """The network part VI's text describes but its code never built: Conv 30@5x5, MaxPool 2,
    Conv 15@3x3, MaxPool 2, Dropout 0.2, Dense 128 ReLU, Dense 50 ReLU, Dense 10 -- 59,933
    parameters. ELU in the convolutions, ReLU in the dense layers, as the text says.
    Arguments: mnist_cnn.config.schema.ProseConfig."""

    def __init__(self, *, conv1_channels: int, conv1_kernel: int, conv2_channels: int, conv2_kernel: int,
                 pool_size: int, dropout: float, dense_units: list[int], input_shape: Shape, num_classes: int):
        arguments = dict(locals())
        features = nn.Sequential(*two_conv_blocks(input_shape[0], (conv1_channels, conv1_kernel),
                                                  (conv2_channels, conv2_kernel), pool_size, nn.ELU), Dropout(dropout))
        head = dense_head(features, input_shape, list(dense_units), "relu", 0.0, num_classes)
        super().__init__([*features, *head], arguments)


class SpeedrunCNN(KerasNet):
    """experiment=speedrun's network: tuomaso/train_mnist_fast's (Conv 24@5x5, MaxPool 2, ReLU, Conv 32@3x3,
    MaxPool 2, ReLU, Dense 256 ReLU, Dense 10, no dropout) with 48 filters in the second convolution, which
    scored higher on validation for a slightly longer epoch (docs/performance.md, "The speedrun") --
    321,066 parameters. Arguments: mnist_cnn.config.schema.SpeedrunConfig."""

    def __init__(self, *, conv1_channels: int, conv1_kernel: int, conv2_channels: int, conv2_kernel: int,
                 pool_size: int, dense_units: int, input_shape: Shape, num_classes: int):
        arguments = dict(locals())
        features = nn.Sequential(*two_conv_blocks(input_shape[0], (conv1_channels, conv1_kernel),
                                                  (conv2_channels, conv2_kernel), pool_size, nn.ReLU))
        head = dense_head(features, input_shape, [dense_units], "relu", 0.0, num_classes)
        super().__init__([*features, *head], arguments)


def two_conv_blocks(in_channels: int, conv1: tuple[int, int], conv2: tuple[int, int], pool_size: int,
                    activation: type[nn.Module]) -> list[nn.Module]:
    """Conv (channels, kernel) conv1, max-pool, activation, then the same with conv2: the features of
    ProseCNN (ELU) and SpeedrunCNN (ReLU)."""
    return [nn.Conv2d(in_channels, *conv1), *pooled(pool_size, activation()),
            nn.Conv2d(conv1[0], *conv2), *pooled(pool_size, activation())]


def renumbered(state_dict: dict, net: nn.Sequential, prefix: str = "net.") -> dict:
    """`state_dict` with the layers of a checkpoint written before the flatten moved into FlattenLinear
    renumbered: those after it were one higher. The layers with parameters are the same, in the same
    order, so they are matched by order."""
    ours = [i for i, layer in enumerate(net) if any(True for _ in layer.parameters(recurse=False))]
    found = sorted({int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)})
    if found == ours or len(found) != len(ours):
        return state_dict
    number = dict(zip(found, ours))
    out = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            key = f"{prefix}{number[int(index)]}.{rest}"
        out[key] = value
    return out


NETWORKS = {cls.__name__: cls for cls in (BaselineCNN, EluCNN, ProseCNN, SpeedrunCNN)}
