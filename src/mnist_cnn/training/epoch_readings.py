"""An epochs grid from one run per seed: what a run stopped after epoch k would have tested, for
several k, read from one longer run.

This is exact, not an approximation, because nothing in a run depends on how many epochs it will
have: Adadelta has no schedule and Keras's decay counts steps; batches are seeded per epoch; dropout
draws from one generator that validation never touches. So a k-epoch run is the first k epochs of a
longer one, and it would test the checkpoint its ModelCheckpoint had kept by then. tests/test_sweeps.py
compares the readings with separate runs, figure for figure.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


class BestAtEpochs(Callback):
    """Copies the weights the checkpoint callback keeps as best, as it keeps them, and notes, after
    each epoch in `epochs`, which ones a run stopped there would test."""

    def __init__(self, epochs: list[int]):
        self.epochs = sorted(set(epochs))
        self.best_path: str | None = None
        self.noted = 0  # epochs looked at
        self.kept: dict[int, dict] = {}  # best epoch -> its weights (on the CPU)
        self.tested: dict[int, int] = {}  # k -> the best epoch after k epochs

    # ModelCheckpoint decides at the end of an epoch, after every other callback; the weights are still
    # that epoch's when the next epoch starts, and when training ends.
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.note(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.note(trainer, pl_module)

    def note(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch  # epochs completed
        if epoch <= self.noted:  # the first epoch, or a resumed run that noted this one before
            return
        self.noted = epoch
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path and checkpoint.best_model_path != self.best_path:
            self.best_path = checkpoint.best_model_path  # a new best file: it holds this epoch's weights
            self.kept[epoch] = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}
        if epoch in self.epochs and self.kept:
            self.tested[epoch] = max(self.kept)
        needed = set(self.tested.values()) | {max(self.kept, default=0)}
        self.kept = {e: w for e, w in self.kept.items() if e in needed}  # at most len(epochs) + 1 copies

    # Kept in checkpoints, so that a resumed run still reads the epochs it had passed.
    def state_dict(self) -> dict:
        return {"best_path": self.best_path, "noted": self.noted, "kept": self.kept, "tested": self.tested}

    def load_state_dict(self, state: dict) -> None:
        self.best_path, self.noted, self.kept, self.tested = (
            state[k] for k in ("best_path", "noted", "kept", "tested")
        )


def read_epochs(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule,
    readings: BestAtEpochs,
    history: list[dict],
    with_test: bool,
) -> dict[str, dict]:
    """{k: the figures a k-epoch run would report}, testing each k's kept weights (if `with_test`). Leaves
    the model with other weights: call before the run's own test, which loads its checkpoint."""
    out = {}
    for k, best_epoch in sorted(readings.tested.items()):
        model.load_state_dict(readings.kept[best_epoch])
        test = trainer.test(model, datamodule=datamodule, verbose=False)[0] if with_test else {}
        best = next(h for h in history if h["epoch"] == best_epoch)
        out[str(k)] = {
            "epochs": k,
            "best_epoch": best_epoch,
            "best_val_acc": best["val_acc"],
            "best_val_loss": best["val_loss"],
            "test_acc": test.get("test_acc"),
            "test_loss": test.get("test_loss"),
        }
    return out
