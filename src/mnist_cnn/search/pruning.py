"""A trial of a search reports its validation accuracy at each epoch's end, and stops there when the study's
pruner (MedianPruner by default: below the median of the trials before it at that epoch) says it is clearly
behind: training.interrupt.Pruned, which the job records as `"status": "pruned"` with the epochs it ran."""

from __future__ import annotations

import lightning as L
import optuna

from mnist_cnn.search.study import open_study
from mnist_cnn.training.interrupt import Pruned


class TrialPruning(L.Callback):
    def __init__(self, study_name: str, storage: str, trial_number: int, pruner=None):
        study = open_study(study_name, storage, pruner=pruner)  # the search's pruner decides, in this process too
        # Optuna has no public way to take up a trial another process asked for; its storage has
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
        self.trial = optuna.Trial(study, trial_id)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_acc" not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics["val_acc"]), trainer.current_epoch + 1)
        if self.trial.should_prune():
            raise Pruned(trainer.current_epoch + 1)
