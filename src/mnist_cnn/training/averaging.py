"""An exponential moving average of the weights: Lightning's weight averaging, with the average warmed up
and made right for a run that tests its best checkpoint after the fit."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import lightning as L
from annotated_types import Interval
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor


def warmed_ema(decay: float, average: Tensor, current: Tensor, updates: Tensor) -> Tensor:
    """The average moved towards the current weights. Its share starts low and grows to `decay`
    ((1 + n) / (10 + n) after n updates, as TensorFlow's ExponentialMovingAverage does): a fixed 0.999 from the
    first step would keep much of the random initial weights for the first thousands of steps, and the early
    epochs' validation would judge a network that was never trained."""
    share = ((1 + updates) / (10 + updates)).clamp(max=decay)
    return average + (current - average) * (1 - share)


class WeightEMA(WeightAveraging):
    """Validation, the checkpoints and the test see the average; the optimiser steps the weights themselves.

    Lightning's EMAWeightAveraging, left to itself, would test the raw weights: `trainer.test(ckpt_path=...)`
    after a fit calls its on_load_checkpoint, which puts the checkpoint's raw weights (kept for resuming) back
    in the model. Here a checkpoint read outside the fit keeps its state_dict, the average.

    Args:
        decay: the average's own share at each training step, once warmed up (0.999: about the last 1,000 steps)
    """

    def __init__(self, decay: Annotated[float, Interval(gt=0, lt=1)] = 0.999):
        super().__init__(avg_fn=partial(warmed_ema, decay))

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
