"""The training step on CUDA as one captured CUDA graph: forward, loss, backward and optimiser step,
launched with one call per batch.

Written because on a GPU the step of these small networks is short next to the host's work of
launching its kernels one by one: the GPU waited on Python (docs/performance.md, "The GPU step").
torch.compile's "reduce-overhead" mode captures graphs too, but compiles for tens of seconds first,
longer than a whole run here, and leaves the optimiser step outside its graph.

What it changes, and what it does not:
- The maths is the module's own: the same forward, loss and gradients, and the optimiser it
  configured, run with `capturable=True` (its state stays on the GPU), `fused=True` where torch has a
  fused kernel for it (SGD, Adam, AdamW), and its learning rate held in a GPU tensor that the
  schedule updates in place. The fused kernels round differently from the per-tensor ones, so a
  graphed run and an uncaptured one differ in their last bits; each repeats itself run to run.
- Shapes are static: the graph is captured for the training batch size. A batch of another size
  (the last, smaller batch of an epoch) runs the same step uncaptured. No data is dropped.
- The first WARMUP steps run uncaptured on the capture stream (the optimiser creates its state,
  cuBLAS and cuDNN their workspaces), as torch's documentation prescribes; they are real steps.
- Dropout's random numbers come from the same generator, advanced by each replay.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor

# LearningRateMonitor copies the learning rate with torch.tensor(), which warns when it is a tensor already
warnings.filterwarnings(
    "ignore", message="To copy construct from a tensor", module="lightning.pytorch.callbacks.lr_monitor"
)

WARMUP = 3
FUSED = {"SGD", "Adam", "AdamW"}  # torch's fused CUDA kernels that take a tensor learning rate
CAPTURABLE = {"Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"}
GRAPHABLE = FUSED | CAPTURABLE
# float16's loss scaler reads the GPU every step, which a graph cannot hold
GRAPH_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")


def obstacle(device: str, one_device: bool, compile: bool, precision: str, optimizer: str) -> str | None:
    """Why a run's training step cannot be captured as one CUDA graph, or None where it can: the one rule
    behind callbacks.speed.cuda_graph, whose null means "wherever it can run" and whose true is refused elsewhere.
    device: "cuda", "cpu", ...; precision: Lightning's resolved setting; optimizer: a torch.optim class name
    (SGD counts through its fused kernel)."""
    if device != "cuda":
        return f"it needs a CUDA GPU, and this run is on {device}"
    if not one_device:
        return "it captures one device's step: set trainer.devices=1"
    if compile:
        return "callbacks.speed.compile=true compiles the same step: choose one"
    if precision not in GRAPH_PRECISIONS:
        return f"trainer.precision={precision} scales the loss with a check on the GPU every step"
    if optimizer not in GRAPHABLE:
        return f"torch.optim.{optimizer}'s step cannot be captured (allowed: {', '.join(sorted(GRAPHABLE))})"
    return None


class GraphedStep:
    """`loss_of(x, y)` (forward and loss, with whatever it accumulates on the device), its backward and
    the optimiser's step, for one batch: captured once as a CUDA graph, then replayed."""

    def __init__(self, loss_of: Callable[[Tensor, Tensor], Tensor], optimizer: torch.optim.Optimizer):
        self.loss_of, self.optimizer = loss_of, optimizer
        self.stream = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.x = self.y = self.loss = None
        self.steps = 0
        self.settings = [
            {k: group[k] for k in ("lr", "capturable", "fused", "foreach") if k in group}
            for group in optimizer.param_groups
        ]
        name = type(optimizer).__name__
        device = optimizer.param_groups[0]["params"][0].device
        for group in optimizer.param_groups:
            if name in CAPTURABLE:
                group["capturable"] = True
            if name in FUSED:
                group["fused"], group["foreach"] = True, False
            # a float would be baked into the graph; the schedule fills a tensor in place
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
        for (
            state
        ) in optimizer.state.values():  # Lightning restores step counts on the CPU; captured, they live on the GPU
            if isinstance(state.get("step"), Tensor):
                state["step"] = state["step"].to(device)

    def release(self) -> None:
        """The optimiser as it was configured (learning rates as floats again), and the graph freed."""
        for group, setting in zip(self.optimizer.param_groups, self.settings):
            lr = group["lr"]
            group.update(setting, lr=lr.item() if isinstance(lr, Tensor) else lr)
        if not any(s.get("capturable") or s.get("fused") for s in self.settings):
            for state in self.optimizer.state.values():  # where torch keeps them uncaptured
                if isinstance(state.get("step"), Tensor):
                    state["step"] = state["step"].cpu()
        self.graph = self.x = self.y = self.loss = None

    def portable(self, state: dict) -> dict:
        """An optimiser's or schedule's state_dict as the uncaptured optimiser would write it: learning
        rates as floats, the configured flags, so that a checkpoint resumes on any device."""
        state = {
            k: [float(v) if isinstance(v, Tensor) else v for v in value] if k == "_last_lr" else value
            for k, value in state.items()
        }
        if "param_groups" in state:
            state["param_groups"] = [
                {**group, **setting, "lr": float(group["lr"])}
                for group, setting in zip(state["param_groups"], self.settings)
            ]
            state["state"] = {
                i: {k: v.cpu() if k == "step" and isinstance(v, Tensor) else v for k, v in s.items()}
                for i, s in state["state"].items()
            }
        return state

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """One training step on (x, y); returns the loss, detached."""
        self.steps += 1
        if self.graph is not None and x.shape == self.x.shape:
            self.x.copy_(x)
            self.y.copy_(y)
            self.graph.replay()
            return self.loss
        if self.graph is not None or self.steps <= WARMUP:
            return self.on_capture_stream(self.eager, x, y)
        return self.capture(x, y)

    def eager(self, x: Tensor, y: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_of(x, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def on_capture_stream(self, step: Callable, *args) -> Tensor:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out = step(*args)
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def capture(self, x: Tensor, y: Tensor) -> Tensor:
        self.x, self.y = x.clone(), y.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are then allocated inside the graph
        graph = torch.cuda.CUDAGraph()
        # Autocast's cache of cast weights would outlive the capture; the graph recasts them each replay.
        dtype = torch.get_autocast_dtype("cuda")
        autocast = torch.autocast("cuda", dtype=dtype, enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)
        with torch.cuda.graph(graph, stream=self.stream), autocast:
            self.loss = self.eager(self.x, self.y)
        self.graph = graph
        graph.replay()  # capturing ran nothing: this is the step
        return self.loss
