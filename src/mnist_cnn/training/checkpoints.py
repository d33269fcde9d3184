"""Checkpoints while training: written atomically, off the training thread, and often enough to resume
(reading one back for predict, export and the demo: mnist_cnn.inference.loader)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from mnist_cnn.atomic import write_atomically
from mnist_cnn.training.interrupt import AtStepEnd

CUDA_SECONDS_BETWEEN_SAVES = 60.0


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's save goes through an fsspec transaction whose temporary file is made in the system
    temp folder; where that is another filesystem, the final move is a copy into place that a kill
    can leave half-written. This writes beside the target and renames, which is atomic."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(path, buffer.getvalue())


def background_checkpoint_io() -> AsyncCheckpointIO:
    """Checkpoints written off the training thread: Lightning's AsyncCheckpointIO copies the tensors
    on the training thread (a device-side clone) and serialises and writes them from a background
    thread, through AtomicCheckpointIO, so the files stay atomic; one write at a time, in order, all
    finished before fit returns or raises."""
    return AsyncCheckpointIO(AtomicCheckpointIO())


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (here: best by val_acc, and last.ckpt at every epoch end), plus
    last.ckpt every `every_n_steps` training steps, so that a killed run loses little, and at the
    step where a SIGTERM or SIGINT arrived (mnist_cnn.training.interrupt), so that a stopped run loses nothing."""

    def __init__(self, every_n_steps: int | None = None, every_n_seconds: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.every_n_steps, self.every_n_seconds = every_n_steps, every_n_seconds
        self.signals = AtStepEnd()
        self.saved_at = time.monotonic()

    def save_last_now(self, trainer) -> None:
        path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        self.last_model_path = path  # else the epoch-end save sees a foreign last.ckpt and writes last-v1.ckpt
        trainer.save_checkpoint(path, weights_only=False)  # the full state: a resume needs the optimiser too
        self.saved_at = time.monotonic()

    def periodic_save_due(self, trainer) -> bool:
        """every_n_seconds where set, and on CUDA by default (steps there take milliseconds: every 100
        steps would write several checkpoints a second); else every_n_steps."""
        seconds = self.every_n_seconds
        if seconds is None and trainer.strategy.root_device.type == "cuda":
            seconds = CUDA_SECONDS_BETWEEN_SAVES
        if seconds is not None:
            return time.monotonic() - self.saved_at >= seconds
        return bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.saved_at = time.monotonic()
        if trainer.world_size == 1:  # under DDP every rank would have to stop at the same step: Lightning's way
            self.signals.install()  # after Lightning's own handlers, which the trainer sets before this hook

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self.signals.restore()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._save_then_stop(trainer, periodic=self.periodic_save_due(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_then_stop(trainer, periodic=False)  # a signal during validation: the epoch is complete

    def _save_then_stop(self, trainer, periodic: bool) -> None:
        # The signal is read once: one landing between two reads would stop the run at a step whose
        # checkpoint was never written. One that lands after this read is acted on at the next step.
        signum = self.signals.signum
        if signum is not None or periodic:
            self.save_last_now(trainer)
        if signum is not None:
            self.signals.stop(trainer.global_step, trainer.current_epoch + 1)


def newest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a resumed run continues from: the most recently written one in its checkpoint folder."""
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
    return found[-1] if found else None
