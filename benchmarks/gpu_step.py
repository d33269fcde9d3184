"""Where a graphed GPU step's time goes (benchmarks.gpu's --probe and its summary's step figures): the replayed
graph's own GPU time per step under each setting, the Trainer's step beside it, and what makes the host wait."""

from __future__ import annotations

import collections
import statistics
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from benchmarks.common import RUNS, project_trainer
from mnist_cnn.runs.build import model_of
from mnist_cnn.training.graphed import GraphedStep
from mnist_cnn.training.speed import LossWatch

FLOOR_VARIANTS = {  # the replayed step's GPU time under each setting the Trainer could use
    "bf16": ("bf16", True, False),
    "bf16 deterministic off": ("bf16", False, False),
    "bf16 channels_last": ("bf16", True, True),
    "fp32": ("fp32", True, False),
}


def graph_floor(
    name: str, device: torch.device, variant: str, steps: int = 200, profile_to: Path | None = None
) -> float:
    """Milliseconds per step of the run's own step (its module's loss_of and its optimiser) captured with
    mnist_cnn.training.graphed and replayed back to back on device-resident batches, nothing else on the host: the
    floor the Trainer's graphed step stands on. profile_to: the replays' kernels, by GPU time."""
    precision, deterministic, channels_last = FLOOR_VARIANTS[variant]
    experiment, batch_size = RUNS[name]
    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    torch.manual_seed(0)
    model = model_of(cfg.model, cfg.data.dataset)
    model.to(device)
    if channels_last:
        model.net.to(memory_format=torch.channels_last)
    watch = LossWatch(device, 0)  # the run's step notes its loss on the device, as FastStep's does
    configured = model.configure_optimizers()  # its schedule, if any, is left out: the floor is the step's own time
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured

    def loss_of(x, y):
        loss = model.loss_of(x, y)
        watch.note(loss)
        return loss

    x = torch.randn(16 * batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (16 * batch_size,), device=device)
    torch.use_deterministic_algorithms(deterministic)
    torch.utils.deterministic.fill_uninitialized_memory = False
    step = GraphedStep(loss_of, optimizer)
    model.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    try:
        with autocast:
            for i in range(10):
                step(*batches[i % 16])
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            for i in range(steps):
                step(*batches[i % 16])
            torch.cuda.synchronize(device)
            ms = 1000 * (time.perf_counter() - start) / steps
            if profile_to is not None:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    for i in range(20):
                        step(*batches[i % 16])
                    torch.cuda.synchronize(device)
                profile_to.write_text(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=45))
    finally:
        torch.use_deterministic_algorithms(False)
        step.release()
    return ms


def trainer_step_ms(name: str, device: torch.device, args, *overrides) -> float:
    """The median time between the ends of consecutive graphed training steps through the Trainer (the
    run's callbacks and logging, validation and checkpoints off), on the GPU's timeline."""
    with tempfile.TemporaryDirectory() as tmp:
        timer = project_trainer(
            name,
            "auto",
            device,
            args,
            tmp,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=120",
            "trainer.limit_val_batches=0",
            "~callbacks.checkpoint",
            *overrides,
        )
    stamps = timer.stamps[10:]
    return 1000 * statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


TRAINER_VARIANTS = {
    "as run": [],
    "no lr monitor": ["~callbacks.learning_rate"],
    "logging every 1000 steps": ["trainer.log_every_n_steps=1000"],
    "fp32": ["trainer.precision=32-true"],
}


def sync_sources(name: str, device: torch.device, args, *overrides) -> dict:
    """Where the Trainer's graphed steps make the host wait for the GPU: each call stack (innermost
    frames first) of a synchronising CUDA call, counted, from torch.cuda.set_sync_debug_mode's warnings."""
    stacks = collections.Counter()

    def note(message, category, filename, lineno, file=None, line=None):
        if "synchronizing" in str(message):
            frames = traceback.extract_stack()[:-2]
            stacks[
                " <- ".join(
                    f"{f.filename.split('site-packages/')[-1]}:{f.lineno}:{f.name}" for f in reversed(frames[-7:])
                )
            ] += 1

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores showwarning on the way out
            warnings.simplefilter("always")
            warnings.showwarning = note
            trainer_step_ms(name, device, args, *overrides)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return dict(stacks.most_common(25))


STEP_VARIANTS = {
    "as run": [],
    "channels_last": ["callbacks.speed.channels_last=true"],
    "cudnn.benchmark": ["trainer.benchmark=true"],
}


def step_against_floor(device: torch.device, args, kernels: Path) -> dict:
    """Per lab run, the Trainer's graphed step (median, ms) beside the graph's own GPU time per step
    (graph_floor, bf16), with two layout and algorithm switches; the baseline's kernels per replay."""
    result = {}
    for name in RUNS:
        result[name] = {
            "floor": graph_floor(name, device, "bf16", profile_to=kernels if name == "baseline" else None),
            **{v: trainer_step_ms(name, device, args, *o) for v, o in STEP_VARIANTS.items()},
        }
        print(f"{name:9} step ms: " + ", ".join(f"{k} {v:.3f}" for k, v in result[name].items()), flush=True)
    return result
