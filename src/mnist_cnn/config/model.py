"""The model node: `net`, the network (any nn.Module its `_target_` names; its keys are its constructor's,
mnist_cnn.config.signature), `optimizer` and `schedule` (mnist_cnn.models.classifier.Classifier's). The speed switches
are the speed plug-in's, callbacks.speed (mnist_cnn.training.speed.FastStep)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from mnist_cnn.config.keys import key, optimizers, section


@dataclass
class OptimizerConfig:
    """A torch.optim class by name, with its arguments; unset (null) arguments keep torch's defaults."""

    name: str = key("a torch.optim class", choices=optimizers)
    lr: float = key("learning rate (with schedule.one_cycle: the schedule's peak)", gt=0)
    momentum: Optional[float] = key("SGD, RMSprop", None, ge=0)
    nesterov: Optional[bool] = key("SGD", None)
    rho: Optional[float] = key("Adadelta", None, ge=0, le=1)
    eps: Optional[float] = key("added to denominators", None, gt=0)
    betas: Optional[List[float]] = key("Adam, AdamW: the two moving averages' coefficients", None, ge=0, lt=1)
    weight_decay: Optional[float] = key("L2 penalty", None, ge=0)
    fused: Optional[bool] = key("Adam, AdamW, SGD: the update as one fused kernel per step", None)


@dataclass
class ScheduleConfig:
    """How the learning rate moves during the fit: Keras's time-based decay, or a one-cycle schedule."""

    decay: float = key("Keras's time-based decay: lr / (1 + decay * step), step counted in optimiser steps", 0.0, ge=0)
    one_cycle: bool = key("torch's OneCycleLR over the whole fit, peaking at optimizer.lr (instead of decay)", False)


@dataclass
class ModelConfig:
    """The network, and how it is trained: a model YAML sets `net` and, where it wants other than Adam at
    lr 0.001 with no schedule, `optimizer` and `schedule`."""

    net: Any = key("the network: _target_ names its class, the other keys are its constructor's arguments")
    optimizer: OptimizerConfig = section(
        OptimizerConfig, "Adam at torch's defaults unless the model sets one", name="Adam", lr=0.001
    )
    schedule: ScheduleConfig = section(ScheduleConfig, "none by default")
    label_smoothing: float = key("the training loss's target mass spread over all classes (0: none)", 0.0, ge=0, lt=1)


# Keys of the model node users typed before it was split, and where they are now
MOVED = {
    "model.channels_last": "callbacks.speed.channels_last",
    "model.compile": "callbacks.speed.compile",
    "model.cuda_graph": "callbacks.speed.cuda_graph",
    "model.optimizer.decay": "model.schedule.decay",
    "model.optimizer.one_cycle": "model.schedule.one_cycle",
    "model._target_": "model.net._target_",
}
