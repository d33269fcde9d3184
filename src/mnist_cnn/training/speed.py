"""How the training step runs, apart from what it computes: the channels_last layout, torch.compile, the
step captured as one CUDA graph (mnist_cnn.training.graphed), and the loss watch that reads nothing back per
step. One Lightning callback, FastStep, switched by callbacks.speed.channels_last, callbacks.speed.compile and
callbacks.speed.cuda_graph; the LightningModule (mnist_cnn.models.classifier) knows none of it. Each trick and its
figures: docs/performance.md."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import Tensor, nn

from mnist_cnn.errors import TrainingDiverged
from mnist_cnn.training.graphed import GraphedStep, obstacle


class QuickSetattr:
    """nn.Module's __setattr__, with a shortcut for re-setting a plain attribute (not a tensor or module)
    that is one already, where nn.Module's checks end the same way. Lightning sets one (_current_fx_name)
    twice around every hook it calls, some 40 times a step: on a GPU, whose graphed step is short,
    nn.Module's checks were a tenth of the host's time per step (docs/performance.md, "The GPU step").
    A mixin, as __setattr__ is looked up on the class."""

    def __setattr__(self, name: str, value) -> None:
        if name in self.__dict__ and not isinstance(value, (Tensor, nn.Module)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


QUICKENED: dict[type, type] = {}


def quicken(pl_module: L.LightningModule) -> None:
    """The module made an instance of its class with QuickSetattr in front: the speed plug-in's, so that the
    LightningModule itself stays a plain one."""
    cls = type(pl_module)
    if not issubclass(cls, QuickSetattr):
        pl_module.__class__ = QUICKENED.setdefault(cls, type(f"Quick{cls.__name__}", (QuickSetattr, cls), {}))


def wants_channels_last(setting: bool | None, device: torch.device) -> bool:
    """null means CPU only: the channels_last conv layout made a CPU step faster (oneDNN) but uncaptured
    H100 epochs slower (docs/performance.md: "Earlier measurements", the GPU switches; "The GPU step")."""
    return device.type == "cpu" if setting is None else setting


def wants_cuda_graph(setting: bool | None, trainer, compile: bool, optimizer: torch.optim.Optimizer) -> bool:
    """null means wherever it can run (mnist_cnn.training.graphed.obstacle); true where it cannot is refused before
    training (mnist_cnn.config.checks.check_cuda_graph)."""
    if setting is not None:
        return setting
    return (
        obstacle(
            trainer.strategy.root_device.type,
            trainer.world_size == 1,
            compile,
            str(trainer.precision),
            type(optimizer).__name__,
        )
        is None
    )


class LossWatch:
    """Notes the first non-finite training loss on the device: reading the loss back each step would make
    the host wait for the GPU every step. `check`, called at logging intervals and epoch ends, stops
    the run, rather than let it finish with a silently broken model."""

    def __init__(self, device: torch.device, first_step: int):
        self.steps = torch.zeros((), dtype=torch.long, device=device)
        self.first_bad = torch.full((2,), -1.0, dtype=torch.float64, device=device)  # (step, loss)
        self.first_step = first_step

    def note(self, loss: Tensor) -> None:
        first = ~torch.isfinite(loss.detach()) & (self.first_bad[0] < 0)
        here = torch.stack([self.steps.double(), loss.detach().double()])
        self.first_bad.copy_(torch.where(first, here, self.first_bad))
        self.steps += 1

    def check(self, per_epoch: int) -> None:
        step, loss = self.first_bad.tolist()
        if step >= 0:
            step = self.first_step + int(step)
            raise TrainingDiverged(
                f"training loss is {loss} at step {step} (epoch {step // per_epoch + 1}, batch {step % per_epoch})"
            )


class FastStep(L.Callback):
    """The training step made fast without changing what it computes; always on: the loss watch.

    Args:
        channels_last: the channels_last conv layout; null: on CPU only (faster there, slower on an H100)
        compile: torch.compile the network (GPU: see README, Performance)
        cuda_graph: the training step captured once as a CUDA graph and replayed; null: wherever it can run
            (one CUDA device, no compile)
    """

    def __init__(self, channels_last: bool | None = None, compile: bool = False, cuda_graph: bool | None = None):
        self.channels_last, self.compile, self.cuda_graph = channels_last, compile, cuda_graph
        self.watch: LossWatch | None = None
        self.graphed: GraphedStep | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        quicken(pl_module)
        if wants_channels_last(self.channels_last, trainer.strategy.root_device):
            pl_module.net.to(memory_format=torch.channels_last)
        if self.compile and getattr(pl_module.net, "_compiled_call_impl", None) is None:
            pl_module.net.compile()  # state_dict keys stay as they are

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.watch = LossWatch(pl_module.device, trainer.global_step)
        step = self.watched(pl_module.step)  # the module's own step, whatever a user made of it
        optimizer = pl_module.optimizers().optimizer
        if wants_cuda_graph(self.cuda_graph, trainer, self.compile, optimizer):
            self.graphed = step = self.captured(step, optimizer)
            take_over(pl_module)
        pl_module.step = step

    def captured(self, step: Callable[[Tensor, Tensor], Tensor], optimizer: torch.optim.Optimizer) -> GraphedStep:
        """`step` with its backward and the optimiser's step, as one CUDA graph."""
        return GraphedStep(step, optimizer)

    def watched(self, computed: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        def step(x: Tensor, y: Tensor) -> Tensor:
            loss = computed(x, y)
            self.watch.note(loss)
            return loss

        return step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # at the steps the loss is logged, and the epoch's end: one host-device sync at most
        if trainer.global_step % trainer.log_every_n_steps == 0 or batch_idx + 1 == trainer.num_training_batches:
            self.watch.check(trainer.num_training_batches)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.graphed is not None:
            self.graphed.release()
            self.graphed = None
        for name in ("step", *TAKEN_OVER):
            pl_module.__dict__.pop(name, None)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.graphed is not None:  # the optimiser as configured: the checkpoint resumes anywhere
            checkpoint["optimizer_states"] = [self.graphed.portable(s) for s in checkpoint.get("optimizer_states", [])]
            checkpoint["lr_schedulers"] = [self.graphed.portable(s) for s in checkpoint.get("lr_schedulers", [])]


def closure_only(epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
    optimizer_closure()  # training_step, whose step has stepped the optimiser; Lightning counts the step


# The LightningModule's hooks a step that runs its own backward and optimiser step makes no-ops: the
# gradients live in the graph, overwritten at each replay.
TAKEN_OVER = {
    "backward": lambda *args, **kwargs: None,
    "optimizer_zero_grad": lambda *args, **kwargs: None,
    "optimizer_step": closure_only,
}


def take_over(pl_module: L.LightningModule) -> None:
    """The module's backward, zeroing and optimiser step handed to a step that does them itself."""
    for name, hook in TAKEN_OVER.items():
        object.__setattr__(pl_module, name, hook)
