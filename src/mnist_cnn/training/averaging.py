"""An exponential moving average of the weights: Lightning's EMAWeightAveraging, made right for a run that
tests its best checkpoint after the fit."""

from __future__ import annotations

from typing import Annotated

import lightning as L
from annotated_types import Interval
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class WeightEMA(EMAWeightAveraging):
    """Validation, the checkpoints and the test see the average; the optimiser steps the weights themselves.

    Lightning's callback, left to itself, would test the raw weights: `trainer.test(ckpt_path=...)` after a
    fit calls its on_load_checkpoint, which puts the checkpoint's raw weights (kept for resuming) back in the
    model. Here a checkpoint read outside the fit keeps its state_dict, the average.

    Args:
        decay: the average's own share at each training step (0.999: about the last 1,000 steps count)
    """

    def __init__(self, decay: Annotated[float, Interval(gt=0, lt=1)] = 0.999):
        super().__init__(decay=decay)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
