"""The lab's training as a LightningModule: any network that maps images to class logits, trained with
cross-entropy (softmax + categorical cross-entropy, computed stably), its optimiser and schedule from
the model's config node. How the step runs fast (layout, compile, a CUDA graph) is mnist_cnn.training.speed's."""

from __future__ import annotations

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F


class Classifier(L.LightningModule):
    """optimizer: {name: a torch.optim class name, **its arguments}; schedule: {decay: Keras's time-based decay,
    one_cycle}. decay d makes the learning rate lr / (1 + d * step), step counted in optimiser steps, as Keras
    2.3. network: {target: the network's import path, arguments: what builds it}, kept in each checkpoint.
    input_shape (channels, height, width) and num_classes: the dataset's."""

    def __init__(self, net: nn.Module, optimizer: dict, schedule: dict, network: dict,
                 input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.example_input_array = torch.zeros(1, *input_shape)
        # The epoch's summed training loss and right predictions, on the device, and its sample count: plain
        # sums, not torchmetrics objects, whose per-step Python cost showed in the Trainer's overhead
        # (docs/performance.md), and which a CUDA graph can update in place (mnist_cnn.training.speed).
        self.register_buffer("train_loss_sum", torch.zeros(()), persistent=False)
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.train_samples = 0
        # validate_args off: torchmetrics' checks run torch.unique on every batch, a host-device sync per step
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes, validate_args=False)
        self.test_acc = self.val_acc.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch, noted in the epoch's sums on the device."""
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_correct += (logits.argmax(dim=1) == y).sum()
        self.train_loss_sum += loss.detach() * len(y)
        return loss

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training step's computation, which mnist_cnn.training.speed.FastStep watches (and captures as
        a CUDA graph) as it is."""
        return self.loss_of(x, y)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.step(x, y)
        self.train_samples += len(y)
        # The step's loss is logged only when the logger would write it, and the epoch's figures once, at its
        # last batch: Lightning moves a logged value to its device on every self.log call, which showed in the
        # Trainer's cost per step (docs/performance.md, "Earlier measurements"). The loss goes to the host as a
        # copy: the progress bar reads it at every batch until the next log, and a GPU tensor there made each
        # step wait for the GPU (and a CUDA graph's loss holds the next step's after the next replay).
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train_loss_step", loss.detach().to("cpu", copy=True), prog_bar=True, batch_size=len(y))
        if batch_idx + 1 == self.trainer.num_training_batches:
            for name, value in (("train_loss_epoch", self.train_loss_sum / self.train_samples),
                                ("train_acc", self.train_correct / self.train_samples)):
                self.log(name, value, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_loss_sum.zero_()
        self.train_correct.zero_()
        self.train_samples = 0

    def evaluate(self, batch, accuracy: torchmetrics.Metric, stage: str, **log) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        accuracy.update(logits, y)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y), **log)
        self.log(f"{stage}_acc", accuracy, batch_size=len(y), **log)
        return logits

    def validation_step(self, batch, batch_idx):
        self.evaluate(batch, self.val_acc, "val", prog_bar=True)

    def test_step(self, batch, batch_idx):
        """Returns the logits: mnist_cnn.training.evaluation.Evaluation builds the run's test report from them."""
        return self.evaluate(batch, self.test_acc, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The network's import path and arguments, which rebuild it without this class (mnist_cnn.inference.loader); the
        random state, so that a resumed run draws the same dropout masks; the epoch's training sums so
        far, so that a run resumed mid-epoch reports the whole epoch's loss and accuracy."""
        network = self.hparams.network
        checkpoint["mnist_cnn"] = {"model": type(self.net).__name__, "target": network["target"],
                                   "network": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in network["arguments"].items()}}
        checkpoint["rng"] = {"torch": torch.get_rng_state(),
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}
        checkpoint["train_epoch_sums"] = {"loss": self.train_loss_sum.detach().cpu().clone(),
                                          "correct": self.train_correct.detach().cpu().clone(),
                                          "samples": self.train_samples}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        sums = checkpoint.get("train_epoch_sums")
        if sums:  # Lightning calls no on_train_epoch_start for the epoch a resume continues
            self.train_loss_sum.copy_(sums["loss"])
            self.train_correct.copy_(sums["correct"])
            self.train_samples = sums["samples"]

    def configure_optimizers(self):
        """The torch.optim class model.optimizer names, with its arguments (null: torch's default), and its schedule."""
        settings, schedule = self.hparams.optimizer, self.hparams.schedule
        kwargs = {k: v for k, v in settings.items() if v is not None and k != "name"}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        optimizer = getattr(torch.optim, settings["name"])(self.parameters(), **kwargs)
        if schedule.get("one_cycle"):  # momentum left alone, as train_mnist_fast's recipe does
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings["lr"], cycle_momentum=False,
                                                           total_steps=self.trainer.estimated_stepping_batches)
        elif schedule.get("decay"):
            decay = schedule["decay"]
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + decay * step))
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
