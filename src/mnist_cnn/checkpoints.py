"""Checkpoints: written atomically and often enough to resume, loaded without running code."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from mnist_cnn.atomic import write_atomically
from mnist_cnn.cli import UserError
from mnist_cnn.interrupt import AtStepEnd
from mnist_cnn.models import MODELS, MNISTClassifier


def load_model(path: str | Path) -> tuple[MNISTClassifier, dict]:
    """The model in eval mode, and what its training data was: {"dataset": mnist or fashion_mnist,
    "normalize": standard or unit}, from the data module's hyperparameters in the checkpoint.

    torch.load(weights_only=True) admits tensors and plain containers only, so a crafted checkpoint
    cannot run code; the model is rebuilt from its class name and plain hyperparameters."""
    path = run_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"{path}: refused, not a checkpoint that loads as plain weights ({type(exc).__name__}: {reason})")
    marker = checkpoint.get("mnist_cnn") if isinstance(checkpoint, dict) else None
    if not isinstance(marker, dict) or marker.get("model") not in MODELS:
        raise UserError(f"{path}: not an mnist-cnn checkpoint (expected one written by mnist-train)")
    # compile is a training-speed switch; predict and export want the plain layers
    # with_defaults: a key that an older checkpoint lacks takes the schema's default
    model = MODELS[marker["model"]].with_defaults(**{**checkpoint["hyper_parameters"], "compile": False})
    model.load_state_dict(checkpoint["state_dict"])
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    return model.eval(), {"dataset": data.get("dataset", "mnist"), "normalize": data.get("normalize", "standard")}


def run_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given; for a run directory, the checkpoint its test used (metrics.json's
    best_checkpoint), else the newest one under it, a best one before last.ckpt."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"{path}: no such checkpoint file or run directory")
    try:
        best = Path(json.loads((path / "metrics.json").read_text()).get("best_checkpoint") or "")
    except (OSError, ValueError):
        best = Path()
    if best.name and best.is_file():
        return best
    found = sorted(path.rglob("*.ckpt"), key=lambda p: (not p.name.startswith("last"), p.stat().st_mtime_ns))
    if not found:
        raise UserError(f"{path}: a folder with no checkpoint (*.ckpt) in it")
    return found[-1]


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
    step where a SIGTERM or SIGINT arrived (mnist_cnn.interrupt), so that a stopped run loses nothing."""

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
        if self.signals.signum is not None or self.periodic_save_due(trainer):
            self.save_last_now(trainer)
        self._stop_if_signalled(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.signals.signum is not None:  # it came during validation: the epoch is complete
            self.save_last_now(trainer)
        self._stop_if_signalled(trainer)

    def _stop_if_signalled(self, trainer) -> None:
        if self.signals.signum is not None:
            self.signals.stop(trainer.global_step, trainer.current_epoch + 1)


def newest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a resumed run continues from: the most recently written one in its checkpoint folder."""
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
    return found[-1] if found else None
