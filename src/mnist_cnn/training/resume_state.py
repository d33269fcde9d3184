"""What a resumed run needs beyond the weights and the optimiser: the random state, so that it draws the same
dropout masks, and the epoch's training sums so far (the module's train_loss_sum, train_correct and
train_samples), so that a run resumed mid-epoch reports the whole epoch's loss and accuracy. Kept in each
checkpoint under the keys earlier runs wrote, so that those resume the same."""

from __future__ import annotations

import lightning as L
import torch


class ResumeState(L.Callback):
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        }
        checkpoint["train_epoch_sums"] = {
            "loss": pl_module.train_loss_sum.detach().cpu().clone(),
            "correct": pl_module.train_correct.detach().cpu().clone(),
            "samples": pl_module.train_samples,
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        sums = checkpoint.get("train_epoch_sums")
        if sums:  # Lightning calls no on_train_epoch_start for the epoch a resume continues
            pl_module.train_loss_sum.copy_(sums["loss"])
            pl_module.train_correct.copy_(sums["correct"])
            pl_module.train_samples = sums["samples"]
