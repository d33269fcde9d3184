"""The lab's CNNs as LightningModules. The base class owns steps, loss, metrics and the
optimiser; each subclass only builds its layers, as the lab's Keras code does."""

from __future__ import annotations

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

import lightning as L
from omegaconf import OmegaConf

from mnist_cnn.graphed import GraphedStep, obstacle

NUM_CLASSES = 10
# torchmetrics' arguments for every metric here; validate_args off: its checks run torch.unique on every
# batch, a host-device sync per step
METRIC = dict(task="multiclass", num_classes=NUM_CLASSES, validate_args=False)


class Dropout(nn.Dropout):
    """nn.Dropout whose mask, in training on CPU, comes from 16 random bits per element, drawn as 64-bit words.

    Written because torch's CPU dropout draws one random number per element through bernoulli_: in the
    baseline's bf16 step (batch 256) its 2.4 million-element mask took about a quarter of the step, more
    than all forward convolutions; 64-bit words, a comparison and a multiply take a fifth of that
    (docs/performance.md, "The CPU step"). The maths is nn.Dropout's: elements kept with probability
    1 - p (p rounded to a multiple of 2^-16) and scaled by 1 / (1 - p). The random stream differs from
    torch's; it comes from torch's default generator, so a seeded run repeats and resumes bit for bit.
    Elsewhere (CUDA, evaluation) it is nn.Dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        bits = words.view(torch.int16)[: x.numel()]
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            n, c, h, w = x.shape  # a mask in the input's own layout: no layout conversion, here or downstream
            bits = bits.view(n, h, w, c).permute(0, 3, 1, 2)
        else:
            bits = bits.view(x.shape)
        keep = bits >= round(self.p * 2**16) - 2**15  # true with probability 1 - p
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


class FlattenLinear(nn.Linear):
    """nn.Flatten then nn.Linear, in one layer with nn.Linear's parameters and maths.

    On a channels_last input it reads the features in memory order, and permutes the weight's
    columns to match, in the same copy that casts the weight to the input's dtype (autocast copies it
    anyway). Written because flattening a channels_last tensor copies it into NCHW order, and the
    gradient coming back in that order made max-pool's backward convert its layout: the two copies
    took longer than max-pool itself in the baseline's bf16 step (docs/performance.md, "The CPU step").
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x.flatten(1))
        n, c, h, w = x.shape
        weight = torch.empty(self.out_features, h, w, c, dtype=x.dtype, device=x.device)
        weight.copy_(self.weight.view(-1, c, h, w).permute(0, 2, 3, 1))  # one copy: layout and dtype
        return F.linear(x.permute(0, 2, 3, 1).reshape(n, -1), weight.view(self.out_features, -1), self.bias)


ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU}


def wants_channels_last(setting: bool | None, device: torch.device) -> bool:
    """null means CPU only: the channels_last conv layout made a CPU step faster (oneDNN) but uncaptured
    H100 epochs slower (docs/performance.md: "Earlier measurements", the GPU switches; "The GPU step")."""
    return device.type == "cpu" if setting is None else setting


def wants_cuda_graph(setting: bool | None, trainer, compile: bool, optimizer: torch.optim.Optimizer) -> bool:
    """null means wherever it can run (mnist_cnn.graphed.obstacle); true where it cannot is refused before
    training (mnist_cnn.config.check_cuda_graph)."""
    if setting is not None:
        return setting
    return obstacle(trainer.strategy.root_device.type, trainer.world_size == 1, compile, str(trainer.precision),
                    type(optimizer).__name__) is None


def keras_init(module: nn.Module) -> None:
    """Keras's defaults: Glorot-uniform weights, zero biases (PyTorch's differ)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class MNISTClassifier(L.LightningModule):
    """Cross-entropy on logits (softmax + categorical cross-entropy, computed stably);
    predictions are softmax probabilities.

    optimizer: {name: a torch.optim class name, decay: Keras's time-based decay, **its arguments}.
    decay d makes the learning rate lr / (1 + d * step), step counted in optimiser steps, as Keras 2.3.
    """

    def __init__(self, net: nn.Sequential, optimizer: dict, channels_last: bool | None, compile: bool,
                 cuda_graph: bool | None):
        super().__init__()
        self.save_hyperparameters(ignore=["net"])  # the subclass's arguments: what rebuilds it from a checkpoint
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        self.net = net
        self.net.apply(keras_init)
        if compile:  # torch.compile of the layers; state_dict keys stay as they are
            self.net.compile()
        # This epoch's summed training loss, right predictions (both on the device) and samples: plain sums,
        # not torchmetrics objects, because their per-step Python cost showed in the Trainer's overhead
        # (docs/performance.md), and because a CUDA graph can update these in place (mnist_cnn.graphed).
        self.register_buffer("train_loss_sum", torch.zeros(()), persistent=False)
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.train_samples = 0
        self.graphed: GraphedStep | None = None
        self.val_acc = torchmetrics.Accuracy(**METRIC)
        self.test_acc = torchmetrics.Accuracy(**METRIC)
        self.register_load_state_dict_pre_hook(MNISTClassifier.renumber_layers)

    @classmethod
    def with_defaults(cls, **changes):
        """The model as `model=<its option>` builds it, its schema's defaults (mnist_cnn.config), with `changes`."""
        from mnist_cnn.config import model_schema  # config imports what models does, not the other way

        node = OmegaConf.merge(OmegaConf.structured(model_schema(cls)), changes)
        return cls(**{k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"})

    def __setattr__(self, name: str, value) -> None:
        """nn.Module's, with a shortcut for re-setting a plain attribute (not a tensor or module) that is
        one already, where nn.Module's checks end the same way. Lightning sets one (_current_fx_name)
        twice around every hook it calls, some 40 times a step: on a GPU, whose graphed step is short,
        nn.Module's checks were a tenth of the host's time per step (docs/performance.md, "The GPU step")."""
        if name in self.__dict__ and not isinstance(value, (torch.Tensor, nn.Module)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def renumber_layers(self, state_dict: dict, prefix: str, *args) -> None:
        """Checkpoints written before the flatten moved into FlattenLinear number the layers after it one
        higher; the layers with parameters are the same, in the same order, so they are matched by order."""
        ours = [i for i, layer in enumerate(self.net) if any(True for _ in layer.parameters(recurse=False))]
        found = sorted({int(k[len(prefix) + 4 :].split(".")[0]) for k in state_dict if k.startswith(f"{prefix}net.")})
        if found == ours or len(found) != len(ours):
            return
        renamed = dict(zip(found, ours))
        for key in [k for k in state_dict if k.startswith(f"{prefix}net.")]:
            index, _, rest = key[len(prefix) + 4 :].partition(".")
            state_dict[f"{prefix}net.{renamed[int(index)]}.{rest}"] = state_dict.pop(key)

    def setup(self, stage: str) -> None:
        if wants_channels_last(self.hparams.channels_last, self.trainer.strategy.root_device):
            self.net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch, noted in the epoch's sums on the device."""
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.watch_loss(loss)
        self.train_correct += (logits.argmax(dim=1) == y).sum()
        self.train_loss_sum += loss.detach() * len(y)
        return loss

    def training_step(self, batch, batch_idx):
        x, y = batch
        # graphed: forward, backward and the optimiser's step in one replay; Lightning's backward and
        # optimiser step are then no-ops (see backward, optimizer_step)
        loss = self.graphed(x, y) if self.graphed is not None else self.loss_of(x, y)
        self.train_samples += len(y)
        # Lightning moves a logged metric object to its device again on every self.log call, which showed in
        # the Trainer's cost per step (docs/performance.md, "Earlier measurements"). So the step's loss is
        # logged when the logger would write it, and the epoch's metrics once, at its last batch: they have
        # accumulated every batch, and Lightning computes and resets them at the epoch end.
        log_now = (self.global_step + 1) % self.trainer.log_every_n_steps == 0
        last = batch_idx + 1 == self.trainer.num_training_batches
        if log_now or last:  # the device-side flag is read here only: one host-device sync at most
            self.stop_if_loss_was_not_finite()
        if log_now:
            # On the host, as a copy (a graph's loss tensor holds the next step's loss after the next replay).
            # The progress bar reads a logged step value again at every batch end until the next log: a GPU
            # tensor there made each step wait for the GPU, and the GPU then wait for the host's next step.
            self.log("train_loss_step", loss.detach().to("cpu", copy=True), prog_bar=True, batch_size=len(y))
        if last:
            self.log("train_loss_epoch", self.train_loss_sum / self.train_samples, on_step=False, on_epoch=True,
                     batch_size=len(y), sync_dist=True)
            self.log("train_acc", self.train_correct / self.train_samples, on_step=False, on_epoch=True,
                     batch_size=len(y), sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_loss_sum.zero_()
        self.train_correct.zero_()
        self.train_samples = 0

    def on_train_end(self) -> None:
        if self.graphed is not None:
            self.graphed.release()
            self.graphed = None

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        if self.graphed is None:  # graphed, the step has run its backward already
            super().backward(loss, *args, **kwargs)

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer) -> None:
        if self.graphed is None:  # graphed, the gradients live in the graph and are overwritten each replay
            super().optimizer_zero_grad(epoch, batch_idx, optimizer)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        if self.graphed is None:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer_closure()  # training_step, whose replay steps the optimiser; Lightning counts the step

    def on_train_start(self) -> None:
        self.steps_on_device = torch.zeros((), dtype=torch.long, device=self.device)
        self.first_bad = torch.full((2,), -1.0, dtype=torch.float64, device=self.device)  # (step, loss)
        self.first_step = self.global_step
        if self.hparams.cuda_graph or (self.hparams.cuda_graph is None and self.device.type == "cuda"):
            optimizer = self.optimizers().optimizer
            if wants_cuda_graph(self.hparams.cuda_graph, self.trainer, self.hparams.compile, optimizer):
                self.graphed = GraphedStep(self.loss_of, optimizer)

    def watch_loss(self, loss: torch.Tensor) -> None:
        """Notes the first non-finite loss on the device: reading it back each step would make the host
        wait for the GPU every step. stop_if_loss_was_not_finite reads it at logging intervals and
        epoch ends, and stops the run, rather than let it finish with a silently broken model."""
        first = ~torch.isfinite(loss.detach()) & (self.first_bad[0] < 0)
        here = torch.stack([self.steps_on_device.double(), loss.detach().double()])
        self.first_bad.copy_(torch.where(first, here, self.first_bad))
        self.steps_on_device += 1

    def stop_if_loss_was_not_finite(self) -> None:
        step, loss = self.first_bad.tolist()
        if step >= 0:
            step = self.first_step + int(step)
            per_epoch = self.trainer.num_training_batches
            raise FloatingPointError(f"training loss is {loss} at step {step} "
                                     f"(epoch {step // per_epoch + 1}, batch {step % per_epoch})")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_acc.update(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log("val_acc", self.val_acc, prog_bar=True, batch_size=len(y))

    def test_step(self, batch, batch_idx):
        """Returns the logits: mnist_cnn.evaluation.Evaluation builds the run's test report from them."""
        x, y = batch
        logits = self(x)
        self.test_acc.update(logits, y)
        self.log("test_loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        self.log("test_acc", self.test_acc, batch_size=len(y))
        return logits

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Mark the checkpoint as ours, with the class that rebuilds it (see mnist_cnn.checkpoints),
        and keep the random state, so that a resumed run draws the same dropout masks."""
        checkpoint["mnist_cnn"] = {"model": type(self).__name__}
        if self.graphed is not None:  # the optimiser as configured: the checkpoint resumes anywhere
            checkpoint["optimizer_states"] = [self.graphed.portable(s) for s in checkpoint.get("optimizer_states", [])]
            checkpoint["lr_schedulers"] = [self.graphed.portable(s) for s in checkpoint.get("lr_schedulers", [])]
        checkpoint["rng"] = {"torch": torch.get_rng_state(),
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}
        # the epoch's training sums so far: a run resumed mid-epoch reports the whole epoch's loss and accuracy
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

    def make_optimizer(self) -> torch.optim.Optimizer:
        """The torch.optim class model.optimizer names, with its arguments (null: torch's default)."""
        kwargs = {k: v for k, v in self.hparams.optimizer.items() if v is not None and k not in ("decay", "one_cycle")}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return getattr(torch.optim, kwargs.pop("name"))(self.parameters(), **kwargs)

    def configure_optimizers(self):
        optimizer, settings = self.make_optimizer(), self.hparams.optimizer
        if settings.get("one_cycle"):  # momentum left alone, as train_mnist_fast's recipe does
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings["lr"], cycle_momentum=False,
                                                           total_steps=self.trainer.estimated_stepping_batches)
        elif settings.get("decay"):
            decay = settings["decay"]
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + decay * step))
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class BaselineCNN(MNISTClassifier):
    """Part III: Conv 32@3x3 ReLU, Conv 64@3x3 ReLU, MaxPool 2, Dropout 0.25, Dense 128 ReLU,
    Dropout 0.5, Dense 10 -- 1,199,882 parameters. Arguments, defaults and ranges: mnist_cnn.config.BaselineConfig."""

    def __init__(self, *, conv1_channels: int, conv2_channels: int, kernel_size: int, pool_size: int,
                 conv_dropout: float, dense_units: int, dense_dropout: float, optimizer: dict,
                 channels_last: bool | None, compile: bool, cuda_graph: bool | None):
        features = nn.Sequential(
            nn.Conv2d(1, conv1_channels, kernel_size), nn.ReLU(),
            nn.Conv2d(conv1_channels, conv2_channels, kernel_size),
            *pooled(pool_size, nn.ReLU()), Dropout(conv_dropout),
        )
        net = nn.Sequential(*features, *dense_head(features, [dense_units], "relu", dense_dropout))
        super().__init__(net, optimizer, channels_last, compile, cuda_graph)


class EluCNN(MNISTClassifier):
    """Part VI's code: two blocks of (Conv 3x3 ELU, Conv 3x3 ELU, MaxPool 2, Dropout 0.25), 32 then 64 channels,
    Dense 256 ELU, Dropout 0.5, Dense 10 -- 329,962 parameters. Arguments: mnist_cnn.config.EluConfig."""

    def __init__(self, *, block1_channels: int, block2_channels: int, kernel_size: int, pool_size: int,
                 conv_dropout: float, dense_units: int, dense_dropout: float, optimizer: dict,
                 channels_last: bool | None, compile: bool, cuda_graph: bool | None):
        layers, channels = [], 1
        for out in (block1_channels, block2_channels):
            layers += [nn.Conv2d(channels, out, kernel_size), nn.ELU(),
                       nn.Conv2d(out, out, kernel_size), *pooled(pool_size, nn.ELU()), Dropout(conv_dropout)]
            channels = out
        features = nn.Sequential(*layers)
        net = nn.Sequential(*features, *dense_head(features, [dense_units], "elu", dense_dropout))
        super().__init__(net, optimizer, channels_last, compile, cuda_graph)


class ProseCNN(MNISTClassifier):
    """The network part VI's text describes but its code never built: Conv 30@5x5, MaxPool 2,
    Conv 15@3x3, MaxPool 2, Dropout 0.2, Dense 128 ReLU, Dense 50 ReLU, Dense 10 -- 59,933
    parameters. ELU in the convolutions, ReLU in the dense layers, as the text says.
    Arguments: mnist_cnn.config.ProseConfig."""

    def __init__(self, *, conv1_channels: int, conv1_kernel: int, conv2_channels: int, conv2_kernel: int,
                 pool_size: int, dropout: float, dense_units: list[int], optimizer: dict,
                 channels_last: bool | None, compile: bool, cuda_graph: bool | None):
        features = nn.Sequential(*two_conv_blocks(conv1_channels, conv1_kernel, conv2_channels, conv2_kernel,
                                                  pool_size, nn.ELU), Dropout(dropout))
        net = nn.Sequential(*features, *dense_head(features, list(dense_units), "relu", 0.0))
        super().__init__(net, optimizer, channels_last, compile, cuda_graph)


class SpeedrunCNN(MNISTClassifier):
    """experiment=speedrun's network: tuomaso/train_mnist_fast's (Conv 24@5x5, MaxPool 2, ReLU, Conv 32@3x3,
    MaxPool 2, ReLU, Dense 256 ReLU, Dense 10, no dropout) with 48 filters in the second convolution, which
    scored higher on validation for a slightly longer epoch (docs/performance.md, "The speedrun") --
    321,066 parameters. Arguments: mnist_cnn.config.SpeedrunConfig."""

    def __init__(self, *, conv1_channels: int, conv1_kernel: int, conv2_channels: int, conv2_kernel: int,
                 pool_size: int, dense_units: int, optimizer: dict, channels_last: bool | None, compile: bool,
                 cuda_graph: bool | None):
        features = nn.Sequential(*two_conv_blocks(conv1_channels, conv1_kernel, conv2_channels, conv2_kernel,
                                                  pool_size, nn.ReLU))
        net = nn.Sequential(*features, *dense_head(features, [dense_units], "relu", 0.0))
        super().__init__(net, optimizer, channels_last, compile, cuda_graph)


def two_conv_blocks(conv1_channels: int, conv1_kernel: int, conv2_channels: int, conv2_kernel: int, pool_size: int,
                    activation: type[nn.Module]) -> list[nn.Module]:
    """Conv (conv1_channels @ conv1_kernel), max-pool, activation, then the same with conv2's sizes: the
    features of ProseCNN (ELU) and SpeedrunCNN (ReLU)."""
    return [nn.Conv2d(1, conv1_channels, conv1_kernel), *pooled(pool_size, activation()),
            nn.Conv2d(conv1_channels, conv2_channels, conv2_kernel), *pooled(pool_size, activation())]


def pooled(pool_size: int, activation: nn.Module) -> list[nn.Module]:
    """Keras's activation-then-max-pool, computed as max-pool then activation: the same values, since a
    non-decreasing activation commutes with max, on a quarter of the elements, forward and backward.
    The gradient is the same too, up to which of two equal maxima receives it: ReLU makes no new ties
    among the values that pass a gradient, a bf16 ELU can round two negative inputs to one value."""
    return [nn.MaxPool2d(pool_size), activation]


def dense_head(features: nn.Module, units: list[int], activation: str, dropout: float) -> list[nn.Module]:
    """Dense layers after `features` (flattened by the first), sized from its output on one 28x28
    image; ends in 10 logits."""
    with torch.no_grad():
        width = features(torch.zeros(1, 1, 28, 28)).flatten(1).shape[1]
    layers = []
    for i, n in enumerate(units):
        layers += [(FlattenLinear if i == 0 else nn.Linear)(width, n), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(Dropout(dropout))
        width = n
    return layers + [(FlattenLinear if not units else nn.Linear)(width, NUM_CLASSES)]


def keras_order(net: nn.Sequential) -> nn.Sequential:
    """`net`'s layers as Keras orders them, in stock PyTorch modules that share its parameters: activation
    then max-pool, nn.Dropout, nn.Flatten then nn.Linear. What the faster order computes, for the tests
    and for the benchmark's plain loop."""
    layers, modules = [], list(net)
    for i, layer in enumerate(modules):
        if isinstance(layer, nn.MaxPool2d):
            layers += [modules[i + 1], layer]
        elif i and isinstance(modules[i - 1], nn.MaxPool2d):
            continue  # the activation, placed before its pool above
        elif isinstance(layer, FlattenLinear):
            linear = nn.Linear(layer.in_features, layer.out_features)
            linear.weight, linear.bias = layer.weight, layer.bias
            layers += [nn.Flatten(), linear]
        elif isinstance(layer, Dropout):
            layers.append(nn.Dropout(layer.p).train(layer.training))
        else:
            layers.append(layer)
    return nn.Sequential(*layers)


MODELS = {cls.__name__: cls for cls in (BaselineCNN, EluCNN, ProseCNN, SpeedrunCNN)}
