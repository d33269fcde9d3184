"""Checkpoints while training: written atomically, off the training thread, and often enough to resume
(reading one back for predict, export and the demo: mnist_cnn.inference.loader)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from mnist_cnn.atomic import write_atomically
from mnist_cnn.training.interrupt import AtStepEnd

CUDA_SECONDS_BETWEEN_SAVES = 60.0
SAME_AS = "mnist_cnn.same_as"  # a checkpoint "saved" as another name of a file already written


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's save goes through an fsspec transaction whose temporary file is made in the system
    temp folder; where that is another filesystem, the final move is a copy into place that a kill
    can leave half-written. This writes beside the target and renames, which is atomic."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if SAME_AS in checkpoint:  # RunCheckpoint's last.ckpt when it is the best checkpoint just written
            link_atomically(Path(checkpoint[SAME_AS]), path)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(path, buffer.getvalue())


def link_atomically(source: Path, path: Path) -> None:
    """`path` as a second name of `source`'s file (a hard link: one copy of the bytes, and either name can be
    deleted or replaced without the other changing), put in place by a rename, as every write here is; where the
    filesystem has no hard links, a copy."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.link")
    try:
        os.link(source, temporary)
    except OSError:
        write_atomically(path, source.read_bytes())
        return
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        """last.ckpt at the end of an epoch whose state was just saved as the best checkpoint: the same file under
        a second name, not the same bytes written again. Loading either gives the same training state (the
        callback's record of its own last path aside, which a resume sets anew)."""
        path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        best, io_plugin = self._last_checkpoint_saved, trainer.strategy.checkpoint_io
        linkable = isinstance(getattr(io_plugin, "checkpoint_io", io_plugin), AtomicCheckpointIO)
        if not (
            self.save_last is True
            and linkable
            and best
            and self._last_global_step_saved == trainer.global_step
            and Path(best) != Path(path)
            and (path == self.last_model_path or not self.file_exists(path, trainer))
        ):
            super()._save_last_checkpoint(trainer, monitor_candidates)
            return
        previous, self.last_model_path = self.last_model_path, path
        if trainer.is_global_zero:
            io_plugin.save_checkpoint({SAME_AS: best}, path)  # in order: after the best file's own write
        trainer.strategy.barrier()
        self._last_global_step_saved, self._last_checkpoint_saved = trainer.global_step, path
        if previous and self._should_remove_checkpoint(trainer, previous, path):
            self._remove_checkpoint(trainer, previous)

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
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)
        self._save_then_stop(trainer, periodic=False)  # a signal during validation: the epoch is complete

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def _save_last_if_stale(self, trainer) -> None:
        """last.ckpt after every validation, as its name promises: Lightning writes it only where a best
        checkpoint was written at the same step, so an epoch that did not improve left it at an earlier one."""
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

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
