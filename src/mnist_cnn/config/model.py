"""The schema of the model group: each option's network arguments (the class its _target_ names, in
mnist_cnn.networks), its optimiser (mnist_cnn.classifier.Classifier's) and the speed switches every
model has (mnist_cnn.speed.FastStep's). A new model adds its dataclass here, to SCHEMAS in
mnist_cnn.config.schema, and its YAML in conf/model/."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Optional

from mnist_cnn.config.keys import key, optimizers, section


@dataclass
class OptimizerConfig:
    """A torch.optim class by name, with its arguments; unset (null) arguments keep torch's defaults."""
    name: str = key("a torch.optim class", choices=optimizers)
    lr: float = key("learning rate (with one_cycle: the schedule's peak)", gt=0)
    decay: float = key("Keras's time-based decay: lr / (1 + decay * step)", 0.0, ge=0)
    one_cycle: bool = key("torch's OneCycleLR over the whole fit, peaking at lr (instead of decay)", False)
    momentum: Optional[float] = key("SGD, RMSprop", None, ge=0)
    nesterov: Optional[bool] = key("SGD", None)
    rho: Optional[float] = key("Adadelta", None, ge=0, le=1)
    eps: Optional[float] = key("added to denominators", None, gt=0)
    betas: Optional[List[float]] = key("Adam, AdamW: the two moving averages' coefficients", None, ge=0, lt=1)
    weight_decay: Optional[float] = key("L2 penalty", None, ge=0)
    fused: Optional[bool] = key("Adam, AdamW, SGD: the update as one fused kernel per step", None)


# The lab's optimisers with Keras 2.3's defaults, which differ from PyTorch's
KERAS_ADADELTA = dict(name="Adadelta", lr=1.0, rho=0.95, eps=1e-7)
KERAS_SGD = dict(name="SGD", lr=0.01, momentum=0.9, nesterov=True, decay=1e-6)


@dataclass
class ModelConfig:
    """The speed switches every model has (mnist_cnn.speed.FastStep's); each model adds its network's
    arguments and its optimiser (mnist_cnn.classifier.Classifier's)."""
    channels_last: Optional[bool] = key("the channels_last conv layout; null: on CPU only (faster there, slower "
                                        "on an H100)", None)
    compile: bool = key("torch.compile the layers (GPU: see README, Performance)", False)
    cuda_graph: Optional[bool] = key("the training step captured once as a CUDA graph and replayed (mnist_cnn.speed); "
                                     "null: wherever it can run (one CUDA device, no compile)", None)


# A model node's keys that are not its network's arguments: the optimiser (mnist_cnn.classifier's) and
# the speed switches (mnist_cnn.speed's)
TRAINING_KEYS = ("optimizer", *(f.name for f in fields(ModelConfig)))


@dataclass
class BaselineConfig(ModelConfig):
    """mnist_cnn.networks.BaselineCNN: part III of the lab, 1,199,882 parameters"""
    _target_: str = key("the network class", "mnist_cnn.networks.BaselineCNN")
    conv1_channels: int = key("filters of the first convolution", 32, ge=1)
    conv2_channels: int = key("filters of the second convolution", 64, ge=1)
    kernel_size: int = key("convolution kernel size", 3, ge=1)
    pool_size: int = key("max-pooling size", 2, ge=1)
    conv_dropout: float = key("dropout after the convolutions", 0.25, ge=0, lt=1)
    dense_units: int = key("units of the hidden dense layer", 128, ge=1)
    dense_dropout: float = key("dropout after the hidden dense layer", 0.5, ge=0, lt=1)
    optimizer: OptimizerConfig = section(OptimizerConfig, "Adadelta with Keras 2.3's defaults", **KERAS_ADADELTA)


@dataclass
class EluConfig(ModelConfig):
    """mnist_cnn.networks.EluCNN: part VI of the lab, as its code builds it, 329,962 parameters"""
    _target_: str = key("the network class", "mnist_cnn.networks.EluCNN")
    block1_channels: int = key("filters of the first block's convolutions", 32, ge=1)
    block2_channels: int = key("filters of the second block's convolutions", 64, ge=1)
    kernel_size: int = key("convolution kernel size", 3, ge=1)
    pool_size: int = key("max-pooling size", 2, ge=1)
    conv_dropout: float = key("dropout after each block", 0.25, ge=0, lt=1)
    dense_units: int = key("units of the hidden dense layer", 256, ge=1)
    dense_dropout: float = key("dropout after the hidden dense layer", 0.5, ge=0, lt=1)
    optimizer: OptimizerConfig = section(OptimizerConfig, "SGD with Nesterov momentum and Keras's decay, as the lab",
                                         **KERAS_SGD)


@dataclass
class ProseConfig(ModelConfig):
    """mnist_cnn.networks.ProseCNN: part VI of the lab, as its text describes it (its code never built this),
    59,933 parameters"""
    _target_: str = key("the network class", "mnist_cnn.networks.ProseCNN")
    conv1_channels: int = key("filters of the first convolution", 30, ge=1)
    conv1_kernel: int = key("kernel size of the first convolution", 5, ge=1)
    conv2_channels: int = key("filters of the second convolution", 15, ge=1)
    conv2_kernel: int = key("kernel size of the second convolution", 3, ge=1)
    pool_size: int = key("max-pooling size", 2, ge=1)
    dropout: float = key("dropout after the convolutions", 0.2, ge=0, lt=1)
    dense_units: List[int] = key("units of each hidden dense layer", [128, 50], ge=1)
    optimizer: OptimizerConfig = section(OptimizerConfig, "SGD with Nesterov momentum and Keras's decay, as the lab",
                                         **KERAS_SGD)


@dataclass
class SpeedrunConfig(ModelConfig):
    """mnist_cnn.networks.SpeedrunCNN: experiment=speedrun's network, 321,066 parameters"""
    _target_: str = key("the network class", "mnist_cnn.networks.SpeedrunCNN")
    conv1_channels: int = key("filters of the first convolution", 24, ge=1)
    conv1_kernel: int = key("kernel size of the first convolution", 5, ge=1)
    conv2_channels: int = key("filters of the second convolution (train_mnist_fast: 32; 48 won on validation)", 48,
                              ge=1)
    conv2_kernel: int = key("kernel size of the second convolution", 3, ge=1)
    pool_size: int = key("max-pooling size", 2, ge=1)
    dense_units: int = key("units of the hidden dense layer", 256, ge=1)
    optimizer: OptimizerConfig = section(OptimizerConfig, "Adam with a one-cycle schedule, as train_mnist_fast",
                                         name="Adam", lr=0.01, betas=[0.7, 0.9], one_cycle=True)
