"""The lab's training as a LightningModule: any network that maps images to class logits, trained with
cross-entropy (softmax + categorical cross-entropy, computed stably), its optimiser and schedule from
the model's config node. How the step runs fast (layout, compile, a CUDA graph) is mnist_cnn.training.speed's."""

from __future__ import annotations

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F
from torch.optim import lr_scheduler


class Classifier(L.LightningModule):
    """Trains `net` with cross-entropy. optimizer: a torch.optim class's name and arguments; schedule: Keras's decay
    (lr / (1 + decay * step)) or one_cycle; network: its import path and arguments, kept in each checkpoint;
    label_smoothing: the training loss's, spread over all classes (validation and test losses have none)."""

    def __init__(self, net: nn.Module, optimizer: dict, schedule: dict, network: dict, input_shape: tuple,
                 num_classes: int, label_smoothing: float = 0.0):  # fmt: skip
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.example_input_array = torch.zeros(1, *input_shape)
        # The epoch's sums on the device: a CUDA graph updates them in place; torchmetrics' per-step cost showed.
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
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self.train_correct += (logits.argmax(dim=1) == y).sum()
        self.train_loss_sum += loss.detach() * len(y)
        return loss

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training step's computation, watched (and captured as a CUDA graph) by training.speed.FastStep."""
        return self.loss_of(x, y)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.step(x, y)
        self.train_samples += len(y)
        # Logged only when the logger writes, and the epoch's figures once: each self.log costs a device move. The
        # loss goes to the host as a copy: the progress bar reads it every batch, and a GPU tensor would wait.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train_loss_step", loss.detach().to("cpu", copy=True), prog_bar=True, batch_size=len(y))
        if batch_idx + 1 == self.trainer.num_training_batches:
            epoch = dict(on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
            self.log("train_loss_epoch", self.train_loss_sum / self.train_samples, **epoch)
            self.log("train_acc", self.train_correct / self.train_samples, **epoch)
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
        """Returns the logits: mnist_cnn.training.evaluation.TestReport builds the run's test report from them."""
        return self.evaluate(batch, self.test_acc, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The network's import path and arguments, which rebuild it without this class (inference.loader)."""
        network = self.hparams.network
        arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in network["arguments"].items()}
        checkpoint["mnist_cnn"] = {"model": type(self.net).__name__, "target": network["target"], "network": arguments}

    def configure_optimizers(self):
        """The torch.optim class model.optimizer names, with its arguments (null: torch's default), and its schedule."""
        settings, schedule = self.hparams.optimizer, self.hparams.schedule
        kwargs = {k: v for k, v in settings.items() if v is not None and k != "name"}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        optimizer = getattr(torch.optim, settings["name"])(self.parameters(), **kwargs)
        if schedule.get("one_cycle"):  # momentum left alone, as train_mnist_fast's recipe does
            steps = self.trainer.estimated_stepping_batches
            schedule = lr_scheduler.OneCycleLR(optimizer, settings["lr"], total_steps=steps, cycle_momentum=False)
        elif schedule.get("decay"):
            decay = schedule["decay"]
            schedule = lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + decay * step))
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
