"""A Keras-style History: one record per epoch, with the time spent training (validation excluded),
and, as Keras's fit prints it, one line per epoch on the console."""

from __future__ import annotations

import logging
import time

import lightning as L

log = logging.getLogger(__name__)


class History(L.Callback):
    """`epochs`: a record per epoch; `steps`: the training loss at each logged step (trainer.log_every_n_steps),
    at its place in epochs (1.5: halfway through the second), which a short run's learning curves draw."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.steps: list[dict] = []
        self._samples, self._resumed_samples = 0, 0

    def state_dict(self) -> dict:
        """Kept in checkpoints, so that a resumed run keeps its earlier epochs, and the samples the epoch it
        continues had seen (its training time restarts: the time before the interruption is not known)."""
        return {"epochs": self.epochs, "steps": self.steps, "samples": self._samples}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state["epochs"])
        self.steps = list(state.get("steps", []))
        self._resumed_samples = state.get("samples", 0)

    def on_train_start(self, trainer, pl_module) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch gets no epoch start
        self._samples, self._resumed_samples = self._resumed_samples, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._val_seconds, self._samples = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += len(batch[0])
        loss = trainer.callback_metrics.get("train_loss_step")  # on the host: the module logs a copy
        if loss is not None and trainer.global_step % trainer.log_every_n_steps == 0:
            at = trainer.current_epoch + (batch_idx + 1) / trainer.num_training_batches
            self.steps.append({"epoch": round(at, 4), "step": trainer.global_step, "train_loss": float(loss)})

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_seconds += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning runs the epoch's validation before this hook, so its metrics are in place.
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        total = time.perf_counter() - self._start
        self.epochs.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_loss": metrics.get("train_loss_epoch"),
                "train_acc": metrics.get("train_acc"),
                "val_loss": metrics.get("val_loss"),
                "val_acc": metrics.get("val_acc"),
                **{k: v for k, v in metrics.items() if k.startswith("val_")},  # any other a module logs
                "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),  # a tensor while graphed
                "train_samples": self._samples * trainer.world_size,
                "train_seconds": total - self._val_seconds,
                "val_seconds": self._val_seconds,
            }
        )
        if trainer.is_global_zero and not trainer.sanity_checking:
            line = epoch_line(self.epochs[-1], trainer.max_epochs)
            self.say(trainer, line)
            log.debug(line)  # train.log's copy (the console's handler shows INFO and above)

    @staticmethod
    def say(trainer, line: str) -> None:
        """Printed through the progress bar where there is one, so that its line is not broken."""
        bar = trainer.progress_bar_callback
        bar.print(line) if bar is not None and bar.is_enabled else print(line)


def epoch_line(e: dict, max_epochs: int) -> str:
    """Keras's order: loss, acc, val_loss, val_acc; then the epoch's time."""
    figures = [
        f"{name} {e[key]:.4f}"
        for name, key in (
            ("loss", "train_loss"),
            ("acc", "train_acc"),
            ("val_loss", "val_loss"),
            ("val_acc", "val_acc"),
        )
        if e.get(key) is not None
    ]
    return f"Epoch {e['epoch']}/{max_epochs}: {', '.join(figures)} ({e['train_seconds'] + e['val_seconds']:.0f} s)"
