"""The progress bar: Lightning's TQDMProgressBar, with two changes to what it shows.

- Epochs are counted as the History lines below the bar and Keras count them: "Epoch 1/3", where
  Lightning's bar says "Epoch 0" just above "Epoch 1/3: loss ...".
- No `v_num`: the logger's version, which here is the run's name (mnist_cnn.tracking.tensorboard), cut by Lightning to
  its last four characters ("v_num=line" for lab_baseline); it tells a user nothing.
- Only in a terminal: where the output goes to a file (nohup, a SLURM log, CI) the bar's redraws would be
  written as lines, one every few batches; the epoch lines (mnist_cnn.training.history) say what a log needs.
"""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf


class ProgressBar(TQDMProgressBar):
    @property
    def is_enabled(self) -> bool:
        return super().is_enabled and sys.stdout.isatty()  # Lightning's bars write to stdout

    def on_train_epoch_start(self, trainer, *_) -> None:
        # Lightning's own, but for the description: calling it first would draw "Epoch 0" for a moment
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset()
        self.train_progress_bar.total = convert_inf(self.total_train_batches)
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
