"""Training speed, measured side by side in one process on the same machine and data:

1. a plain PyTorch loop written as pytorch/examples' mnist/main.py writes it (torchvision MNIST with
   ToTensor + Normalize, a DataLoader, the same network, optimiser and batch size);
2. the project's own Trainer path (the config `python train.py` composes, built by train.build).

For the lab's two runs (baseline at batch 256, ELU at batch 200), fp32 and bf16-mixed, on CPU and
on CUDA when present. Reports train samples per second (median of timed windows after a warm-up),
the wall time of one full epoch (train + validation) and, on CUDA, the time to 99.0% validation
accuracy. Prints a table and writes benchmarks/results/<device>-<date>.json.

    python scripts/benchmark.py            # everything (about 15 minutes on 2 CPU cores)
    python scripts/benchmark.py --quick    # throughput only, fewer windows (under 3 minutes)
    python scripts/benchmark.py --device cpu --overhead   # the Trainer's cost per step at batch 8 (prose_cnn)
    python scripts/benchmark.py --gpu-summary             # on a CUDA machine: benchmarks/results/gpu-summary.json
    python scripts/benchmark.py --lab-epochs --keras-python /tmp/tf/bin/python   # before / now / Keras
    python scripts/benchmark.py --speedrun                # experiment=speedrun against train_mnist_fast

--lab-epochs runs the baseline's one-epoch command as fresh processes at --against (the code before)
and at the working tree, in bf16-mixed and 32-true, and the lab's own Keras code (scripts/keras_lab.py,
under a Python with tensorflow-cpu), alternating, best of --rounds: cpu-<date>-lab-epochs.json.
--speedrun measures, in one run: tuomaso/train_mnist_fast's plain loop (its recipe as published),
experiment=speedrun's epoch through the Trainer against a plain loop doing the same maths on the same
device-resident batches (interleaved), and 5 seeds of `python train.py experiment=speedrun` as whole
processes: cpu-<date>-speedrun.json. Every JSON names the CPU and its ISA (AVX-512 BF16, AMX).

--gpu-summary measures side by side, in one run: the lab_baseline warm epoch (train + validation, with
the run's checkpointing), lab_elu's whole 10-epoch fit, the wall time of the 21-job batch_size sweep
(process start-ups included, with --sweep-launcher's setting), the Trainer's overhead per step over the
plain loop on the GPU, and the CPU overhead ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import io
import pstats
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping
import torch
import torchvision
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F
from torchvision import datasets, transforms

from mnist_cnn.data import MEAN, STD, MNISTDataModule, TensorBatches, default_data_dir, normalize
from mnist_cnn.mnist_files import ensure_mnist
from mnist_cnn import models
from mnist_cnn.models import BaselineCNN, EluCNN, ProseCNN, SpeedrunCNN
from mnist_cnn.config import native_precision
from mnist_cnn.graphed import GraphedStep
from mnist_cnn.train import build

RUNS = {"baseline": ("lab_baseline", BaselineCNN, 256), "elu": ("lab_elu", EluCNN, 200),
        "speedrun": ("speedrun", SpeedrunCNN, 256)}
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed", "auto": "auto"}
TARGET_VAL_ACC = 0.99


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class Stamps:
    """Times at which batches finish. On CUDA these are events on the GPU's own timeline, so that
    stamping every batch does not stall the queue of launched work (a synchronize would)."""

    def __init__(self, device: torch.device):
        self.device, self.marks = device, []

    def mark(self) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        if self.device.type != "cuda":
            return list(self.marks)
        torch.cuda.synchronize(self.device)
        return [self.marks[0].elapsed_time(e) / 1000 for e in self.marks]

    def __len__(self) -> int:
        return len(self.marks)


def window_rates(stamps: list[float], batch_size: int, warmup: int, window: int) -> list[float]:
    """Samples per second over consecutive windows of `window` batches, after `warmup` batches.
    stamps[i] is the time batch i finished (stamps[0]: before the first batch)."""
    return [window * batch_size / (stamps[i + window] - stamps[i])
            for i in range(warmup, len(stamps) - window, window)]


# --- 1. the plain loop ---------------------------------------------------------------------------

def plain_loaders(data_dir: str, batch_size: int, device: torch.device):
    # Collect garbage before the workers fork: a forked worker that frees an inherited CUDA event or
    # tensor left over from an earlier run aborts with "CUDA error: initialization error".
    gc.collect()
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    full = datasets.MNIST(data_dir, train=True, transform=transform)
    train_set, val_set = torch.utils.data.random_split(full, [42000, 18000], generator=torch.Generator().manual_seed(0))
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, **kwargs)
    val = torch.utils.data.DataLoader(val_set, batch_size=1000, **kwargs)
    return train, val


def plain_model(cls, device: torch.device):
    """The same layers, initialisation and optimiser, as stock PyTorch: Keras's layer order, nn.Dropout,
    nn.Flatten, the default layout."""
    torch.manual_seed(0)
    module = cls.with_defaults(channels_last=False)
    net = models.keras_order(module.net).to(device)
    return (net, *optimiser_and_decay(module))  # over the same parameter objects as net


def optimiser_and_decay(module):
    config = module.configure_optimizers()
    if isinstance(config, torch.optim.Optimizer):
        return config, None
    if isinstance(config, dict):
        return config["optimizer"], config["lr_scheduler"]["scheduler"]
    (optimizer,), (schedule,) = config
    return optimizer, schedule


def plain_train(net, optimizer, schedule, loader, device, bf16: bool, max_batches: int | None = None):
    net.train()
    stamps = Stamps(device)
    stamps.mark()
    for batch_idx, (data, target) in enumerate(loader):
        if max_batches is not None and batch_idx >= max_batches:
            break
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(data), target)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        stamps.mark()
    return stamps.seconds()


def plain_validate(net, loader, device, bf16: bool) -> float:
    net.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            correct += (net(data).argmax(dim=1) == target).sum().item()
    return correct / len(loader.dataset)


def plain_run(name, precision, device, args) -> dict:
    _, cls, batch_size = RUNS[name]
    bf16 = precision == "bf16"
    train, val = plain_loaders(args.data_dir, batch_size, device)
    net, optimizer, schedule = plain_model(cls, device)
    n = args.warmup + args.windows * args.window
    stamps = plain_train(net, optimizer, schedule, train, device, bf16, max_batches=n)
    result = {"windows": window_rates(stamps, batch_size, args.warmup, args.window)}
    if not args.quick:
        start = clock(device)
        plain_train(net, optimizer, schedule, train, device, bf16)
        plain_validate(net, val, device, bf16)
        result["epoch_seconds"] = clock(device) - start
    if device.type == "cuda" and not args.quick and precision == "fp32":  # pytorch/examples' loop is fp32
        net, optimizer, schedule = plain_model(cls, device)
        start, acc, epochs = clock(device), 0.0, 0
        while acc < TARGET_VAL_ACC and epochs < args.max_epochs_to_target:
            plain_train(net, optimizer, schedule, train, device, bf16)
            acc, epochs = plain_validate(net, val, device, bf16), epochs + 1
        result.update(time_to_target_seconds=clock(device) - start if acc >= TARGET_VAL_ACC else None,
                      epochs_to_target=epochs, final_val_acc=acc)
    return result


# --- 2. the project's Trainer path -----------------------------------------------------------------

class BatchClock(L.Callback):
    def __init__(self, device):
        self.device, self.epochs, self._stamps = device, [], Stamps(device)

    @property
    def stamps(self) -> list[float]:
        return self._stamps.seconds()

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start = clock(self.device)
        self._stamps.mark()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._stamps.mark()

    def on_train_epoch_end(self, trainer, pl_module):  # Lightning has run validation by now
        val_acc = trainer.callback_metrics.get("val_acc")  # absent when validation is off
        self.epochs.append((clock(self.device) - self._epoch_start, None if val_acc is None else float(val_acc)))


def project_trainer(name, precision, device, args, out_dir, *overrides, callbacks=(), preload=False):
    """The run as train.build makes it, fitted; preload: the data loaded before the clock starts."""
    experiment, _, _ = RUNS[name]
    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            f"experiment={experiment}", f"trainer.precision={PRECISIONS[precision]}",
            f"trainer.accelerator={device.type.replace('cuda', 'gpu')}", f"data.data_dir={args.data_dir}",
            "callbacks.progress_bar.refresh_rate=0", "trainer.num_sanity_val_steps=0",
            f"hydra.runtime.output_dir={out_dir}", *overrides])
    HydraConfig.instance().set_config(cfg)
    timer = BatchClock(device)
    datamodule, model, trainer, *_ = build(cfg, extra_callbacks=(timer, *callbacks))
    if preload:
        datamodule.prepare_data()
        datamodule.setup()
    trainer.fit(model, datamodule=datamodule)
    return timer


def project_run(name, precision, device, args) -> dict:
    batch_size = RUNS[name][2]
    n = args.warmup + args.windows * args.window
    with tempfile.TemporaryDirectory() as tmp:
        timer = project_trainer(name, precision, device, args, tmp, "trainer.max_epochs=1",
                                f"trainer.limit_train_batches={n}", "trainer.limit_val_batches=0",
                                "~callbacks.checkpoint")
        result = {"windows": window_rates(timer.stamps, batch_size, args.warmup, args.window)}
        if args.quick:
            return result
        if device.type == "cpu":  # one epoch, from a fresh start as `python train.py` makes it
            timer = project_trainer(name, precision, device, args, tmp, "trainer.max_epochs=1")
            result["epoch_seconds"] = timer.epochs[0][0]
            return result
        # CUDA: the lab's whole run as configured (checkpoints included); its second epoch is the
        # warm one, comparable with the plain loop's epoch, which runs after its timed windows.
        start = time.perf_counter()
        timer = project_trainer(name, precision, device, args, tmp)
        result.update(fit_seconds=time.perf_counter() - start, epoch_seconds=timer.epochs[1][0],
                      first_epoch_seconds=timer.epochs[0][0], fit_epochs=len(timer.epochs))
        stop = EarlyStopping(monitor="val_acc", mode="max", stopping_threshold=TARGET_VAL_ACC, patience=10**6)
        timer = project_trainer(name, precision, device, args, tmp, f"trainer.max_epochs={args.max_epochs_to_target}",
                                callbacks=(stop,))
        acc = timer.epochs[-1][1]
        result.update(time_to_target_seconds=sum(t for t, _ in timer.epochs) if acc >= TARGET_VAL_ACC else None,
                      epochs_to_target=len(timer.epochs), final_val_acc=acc)
    return result


# Each GPU switch flipped alone against the shipped config, so each is kept only for a measured gain.
SWITCHES = {
    "as shipped": [],
    "channels_last off": ["model.channels_last=false"],
    "cudnn.benchmark on": ["trainer.benchmark=true"],
    "deterministic off": ["trainer.deterministic=false"],
    "compile on": ["model.compile=true"],
    "eval batch 6000": ["data.eval_batch_size=6000"],
}


def switches_run(name, precision, device, args) -> list[dict]:
    batch_size, results = RUNS[name][2], []
    for switch, overrides in SWITCHES.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            timer = project_trainer(name, precision, device, args, tmp, "trainer.max_epochs=2",
                                    "~callbacks.checkpoint", *overrides)
            fit_seconds = time.perf_counter() - start
        stamps = timer.stamps
        epoch1 = stamps[len(stamps) // 2:]  # the second epoch's batches: warm, compiled
        rates = window_rates(epoch1, batch_size, 0, args.window)
        results.append({"model": name, "precision": precision, "switch": switch, "overrides": overrides,
                        "train_samples_per_second": statistics.median(rates), "epoch_seconds": timer.epochs[1][0],
                        "first_epoch_seconds": timer.epochs[0][0], "fit_seconds": fit_seconds})
        print(f"{device.type:5} {name:9} {precision:5} {switch:20} {results[-1]['train_samples_per_second']:9.0f} "
              f"samples/s  epoch {timer.epochs[1][0]:.3f} s (first {timer.epochs[0][0]:.2f} s)", flush=True)
    return results


def profile_run(name, precision, device, args) -> str:
    """Where the host's time goes in one epoch of the project path (cProfile, top functions by own time):
    on a GPU this small model leaves the device waiting on Python, so the host profile is the one that counts."""
    with tempfile.TemporaryDirectory() as tmp:
        project_trainer(name, precision, device, args, tmp, "trainer.max_epochs=1", "trainer.limit_train_batches=20",
                        "trainer.limit_val_batches=2", "~callbacks.checkpoint")  # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        project_trainer(name, precision, device, args, tmp, "trainer.max_epochs=1")
        profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    return f"== {device.type} {name} {precision}: one epoch of the project path ==\n" + text.getvalue()


# --- 3. the framework's cost per step, and the GPU summary -------------------------------------------

OVERHEAD_BATCH = 8  # small enough that the per-step cost of the framework shows against the maths


def plain_same_maths_ms(device: torch.device, args, graphed: bool = False) -> float:
    """Milliseconds per step of a plain loop doing exactly what the Trainer's step does, on the same
    device-resident batches: prose_cnn's forward (the project's module, its layout), cross-entropy, the
    epoch's loss and right-answer sums, backward, SGD with Nesterov momentum, the Keras decay.
    graphed: the step captured as the Trainer captures it on CUDA (mnist_cnn.graphed), in this plain loop."""
    datamodule = MNISTDataModule(args.data_dir, batch_size=OVERHEAD_BATCH, seed=42)
    datamodule.prepare_data()
    datamodule.setup()
    batches = TensorBatches(datamodule.x_train.to(device), datamodule.y_train.to(device), OVERHEAD_BATCH,
                            shuffle=True, seed=42)
    torch.manual_seed(0)
    model = ProseCNN.with_defaults().to(device)
    if models.wants_channels_last(None, device):
        model.net.to(memory_format=torch.channels_last)
    optimizer, schedule = optimiser_and_decay(model)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)

    def loss_of(x, y):
        nonlocal loss_sum, correct
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
        return loss

    step = GraphedStep(loss_of, optimizer) if graphed else None
    model.train()
    stamps = Stamps(device)
    stamps.mark()
    for i, (x, y) in enumerate(batches):
        if i == args.overhead_steps:
            break
        if step is not None:
            step(x, y)
        else:
            optimizer.zero_grad()
            loss_of(x, y).backward()
            optimizer.step()
        schedule.step()
        stamps.mark()
    return ms_per_step(stamps.seconds(), args)


def ms_per_step(stamps: list[float], args) -> float:
    rates = window_rates(stamps, OVERHEAD_BATCH, args.warmup, args.window)
    return 1000 * OVERHEAD_BATCH / statistics.median(rates)


def overhead_run(device: torch.device, args) -> dict:
    """The Trainer path as `python train.py model=prose_cnn data.batch_size=8` runs it (checkpoint callback,
    logging and metrics included; validation off) against the plain loop above; interleaved, best of 3 each.
    On CUDA both capture the step as a graph (the Trainer's default there), and the uncaptured plain loop
    and Trainer are measured beside them."""
    cuda = device.type == "cuda"
    variants = {"plain": lambda: plain_same_maths_ms(device, args, graphed=cuda),
                "project": lambda: trainer_ms_per_step(device, args)}
    if cuda:
        variants.update({"plain_uncaptured": lambda: plain_same_maths_ms(device, args),
                         "project_uncaptured": lambda: trainer_ms_per_step(device, args, "model.cuda_graph=false")})
    times = {name: [] for name in variants}
    for _ in range(3):
        for name, measure in variants.items():
            times[name].append(measure())
    best = {name: min(t) for name, t in times.items()}
    result = {"batch_size": OVERHEAD_BATCH, "model": "prose_cnn", "steps": args.overhead_steps,
              "plain_ms_per_step": best["plain"], "project_ms_per_step": best["project"],
              "overhead_ms_per_step": best["project"] - best["plain"], "ratio": best["project"] / best["plain"],
              "all_ms": times}
    if cuda:
        result.update(plain_uncaptured_ms_per_step=best["plain_uncaptured"],
                      project_uncaptured_ms_per_step=best["project_uncaptured"])
    print(f"{device.type:5} overhead at batch {OVERHEAD_BATCH}: "
          + ", ".join(f"{name} {ms:.3f} ms/step" for name, ms in best.items()) + f"; {result['ratio']:.2f}x", flush=True)
    return result


def trainer_ms_per_step(device: torch.device, args, *overrides) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        timer = project_trainer("elu", "fp32", device, args, tmp, "model=prose_cnn", f"data.batch_size={OVERHEAD_BATCH}",
                                "trainer.max_epochs=1", f"trainer.limit_train_batches={args.overhead_steps}",
                                "trainer.limit_val_batches=0", *overrides)
    return ms_per_step(timer.stamps, args)


def host_profile(path: Path, measure, lines: int = 40, orders: tuple[str, ...] = ("tottime",)) -> str:
    """Where the host's time goes in `measure()`, run once to warm and once under cProfile: the top `lines`
    functions in each of `orders` (cProfile's sort keys), written to `path`."""
    measure()
    profiler = cProfile.Profile()
    profiler.enable()
    measure()
    profiler.disable()
    text = io.StringIO()
    for order in orders:
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(lines)
    path.write_text(text.getvalue())
    return path.name


def train_process(args, *overrides, env: dict | None = None) -> dict:
    """`python train.py <overrides>` as a user runs it: its metrics.json, with the whole process's wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp}", f"data.data_dir={args.data_dir}",
                   *args.smoke_overrides]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
        wall = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"{' '.join(overrides)}: exit {done.returncode}: {done.stderr[-1500:]}")
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    return {"overrides": list(overrides), "process_seconds": wall, "fit_seconds": metrics["fit_seconds"],
            "test_acc": metrics["test_acc"], "best_val_acc": metrics["best_val_acc"], "precision": metrics["precision"],
            "epochs": metrics["epochs"], "train_seconds": [e["train_seconds"] for e in metrics["history"]],
            "val_seconds": [e["val_seconds"] for e in metrics["history"]]}


# The lab's baseline on the GPU: graphed and not, each precision, and two switches on the graphed step.
LAB_VARIANTS = {
    "auto graphed": ("auto", []), "auto uncaptured": ("auto", ["model.cuda_graph=false"]),
    "fp32 graphed": ("fp32", []), "fp32 uncaptured": ("fp32", ["model.cuda_graph=false"]),
    "auto graphed, deterministic off": ("auto", ["trainer.deterministic=false"]),
    "auto graphed, cudnn.benchmark on": ("auto", ["trainer.benchmark=true"]),
}


def lab_runs_on_device(name: str, device: torch.device, args) -> dict:
    """A lab run's whole fit through the Trainer in this process, for each of LAB_VARIANTS: each epoch's
    seconds (train + validation, with the run's checkpointing) and the median GPU time between the ends
    of consecutive training steps (their events on the GPU's timeline)."""
    out = {}
    for variant, (precision, overrides) in LAB_VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            timer = project_trainer(name, precision, device, args, tmp, *overrides, *args.smoke_overrides)
            fit = time.perf_counter() - start
        stamps = timer.stamps
        steps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
        out[variant] = {"overrides": overrides, "fit_seconds": fit, "epochs_seconds": [t for t, _ in timer.epochs],
                        "val_acc": [a for _, a in timer.epochs],
                        "step_ms_median": 1000 * statistics.median(steps) if steps else None}
        r = out[variant]
        print(f"{device.type:5} {name:9} {variant:34} epochs " + " ".join(f"{t:.3f}" for t in r["epochs_seconds"])
              + f" s, fit {fit:.2f} s, step {r['step_ms_median'] or 0:.3f} ms", flush=True)
    return out


def warm_fits(name: str, device: torch.device, args, runs: int = 3) -> list[dict]:
    """The run's trainer.fit in a process that has already trained once (CUDA, cuDNN and the kernels loaded):
    what the fit costs beyond a process's one-time start-up."""
    fits = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            timer = project_trainer(name, "auto", device, args, tmp, *args.smoke_overrides)
            fits.append({"fit_seconds": time.perf_counter() - start, "epochs_seconds": [t for t, _ in timer.epochs],
                         "val_acc": [a for _, a in timer.epochs]})
        print(f"{device.type:5} {name} fit in a warm process: {fits[-1]['fit_seconds']:.3f} s, epochs "
              + " ".join(f"{t:.3f}" for t in fits[-1]["epochs_seconds"]), flush=True)
    return fits[1:]  # the first loads what the later ones find loaded


FLOOR_VARIANTS = {  # the replayed step's GPU time under each setting the Trainer could use
    "bf16": ("bf16", True, False), "bf16 deterministic off": ("bf16", False, False),
    "bf16 channels_last": ("bf16", True, True), "fp32": ("fp32", True, False),
}


def graph_floor(name: str, device: torch.device, variant: str, steps: int = 200, profile_to: Path | None = None) -> float:
    """Milliseconds per step of the run's own step (its module's loss_of and its optimiser) captured with
    mnist_cnn.graphed and replayed back to back on device-resident batches, nothing else on the host: the
    floor the Trainer's graphed step stands on. profile_to: the replays' kernels, by GPU time."""
    precision, deterministic, channels_last = FLOOR_VARIANTS[variant]
    experiment, _, batch_size = RUNS[name]
    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all").to(device)
    if channels_last:
        model.net.to(memory_format=torch.channels_last)
    model.steps_on_device = torch.zeros((), dtype=torch.long, device=device)
    model.first_bad = torch.full((2,), -1.0, dtype=torch.float64, device=device)
    optimizer = model.make_optimizer()  # its schedule, if any, is left out: the floor is the step's own time
    x = torch.randn(16 * batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (16 * batch_size,), device=device)
    torch.use_deterministic_algorithms(deterministic)
    torch.utils.deterministic.fill_uninitialized_memory = False
    step = GraphedStep(model.loss_of, optimizer)
    model.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
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
        timer = project_trainer(name, "auto", device, args, tmp, "trainer.max_epochs=1", "trainer.limit_train_batches=120",
                                "trainer.limit_val_batches=0", "~callbacks.checkpoint", *overrides)
    stamps = timer.stamps[10:]
    return 1000 * statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


TRAINER_VARIANTS = {"as run": [], "no lr monitor": ["~callbacks.learning_rate"],
                    "logging every 1000 steps": ["trainer.log_every_n_steps=1000"],
                    "fp32": ["trainer.precision=32-true"]}


def sync_sources(name: str, device: torch.device, args, *overrides) -> dict:
    """Where the Trainer's graphed steps make the host wait for the GPU: each call stack (innermost
    frames first) of a synchronising CUDA call, counted, from torch.cuda.set_sync_debug_mode's warnings."""
    import collections
    import traceback
    stacks = collections.Counter()

    def note(message, category, filename, lineno, file=None, line=None):
        if "synchronizing" in str(message):
            frames = traceback.extract_stack()[:-2]
            stacks[" <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}:{f.name}"
                               for f in reversed(frames[-7:]))] += 1
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores showwarning on the way out
            warnings.simplefilter("always")
            warnings.showwarning = note
            trainer_step_ms(name, device, args, *overrides)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return dict(stacks.most_common(25))


STEP_VARIANTS = {"as run": [], "channels_last": ["model.channels_last=true"], "cudnn.benchmark": ["trainer.benchmark=true"]}


def step_against_floor(device: torch.device, args, kernels: Path) -> dict:
    """Per lab run, the Trainer's graphed step (median, ms) beside the graph's own GPU time per step
    (graph_floor, bf16), with two layout and algorithm switches; the baseline's kernels per replay."""
    result = {}
    for name in RUNS:
        result[name] = {"floor": graph_floor(name, device, "bf16", profile_to=kernels if name == "baseline" else None),
                        **{v: trainer_step_ms(name, device, args, *o) for v, o in STEP_VARIANTS.items()}}
        print(f"{name:9} step ms: " + ", ".join(f"{k} {v:.3f}" for k, v in result[name].items()), flush=True)
    return result


def gpu_probe(args) -> Path:
    """What a graphed step waits on: for each lab run, the graph's own time per step (graph_floor) beside
    the Trainer's step, with settings flipped one at a time; and their kernel and host profiles."""
    device = torch.device("cuda")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"device": torch.cuda.get_device_name(device), "date": datetime.date.today().isoformat(),
              "commit": git_commit(), "machine": machine(device), "floor_ms": {}, "trainer_ms": {}}
    path = out / "gpu-probe.json"
    if args.probe_syncs:
        record["syncs"] = {"baseline": sync_sources("baseline", device, args),
                           "speedrun": sync_sources("speedrun", device, args)}
        graph_floor("baseline", device, "bf16 channels_last", profile_to=out / "gpu-probe-baseline-channels-last-kernels.txt")
        path.write_text(json.dumps(record, indent=1))
        print(json.dumps(record["syncs"], indent=1))
        return path
    for name in RUNS:
        record["floor_ms"][name] = {v: graph_floor(name, device, v, profile_to=out / f"gpu-probe-{name}-kernels.txt"
                                                   if v == "bf16" else None) for v in FLOOR_VARIANTS}
        print(name, "floor", {k: round(v, 3) for k, v in record["floor_ms"][name].items()}, flush=True)
        path.write_text(json.dumps(record, indent=1))
    for name in RUNS:
        record["trainer_ms"][name] = {v: trainer_step_ms(name, device, args, *o) for v, o in TRAINER_VARIANTS.items()}
        print(name, "trainer", {k: round(v, 3) for k, v in record["trainer_ms"][name].items()}, flush=True)
        path.write_text(json.dumps(record, indent=1))
    host_profile(out / "gpu-probe-host-profile.txt", lambda: trainer_step_ms("baseline", device, args), lines=60,
                 orders=("tottime", "cumulative"))
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=1))
    return path


def gpu_summary(args) -> Path:
    """Everything issue 18 asks of a GPU, in one run: benchmarks/results/gpu-summary.json (with --device cpu
    and --smoke, the same code on a few batches: a rehearsal of the GPU session on a machine without one)."""
    device = torch.device("cpu" if args.device == "cpu" else "cuda")
    out = Path(args.out) / ("gpu-summary.json" if device.type == "cuda" else "cpu-gpu-summary-smoke.json")
    record = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else machine(device)["cpu"],
              "date": datetime.date.today().isoformat(), "torch": torch.__version__, "lightning": L.__version__,
              "commit": git_commit(), "machine": machine(device), "smoke": bool(args.smoke_overrides)}
    accelerator = f"trainer.accelerator={device.type.replace('cuda', 'gpu')}"
    seeds = range(args.elu_seeds)

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, out)

    def part(name: str, measure) -> None:
        try:
            record[name] = measure()
        except Exception as exc:  # one part failing must not cost the others' device time
            record[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: FAILED {record[name]['error']}", flush=True)
        save()

    part("lab_baseline", lambda: lab_runs_on_device("baseline", device, args))
    if "epochs_seconds" in record["lab_baseline"].get("auto graphed", {}):
        record["lab_baseline_epoch_s"] = record["lab_baseline"]["auto graphed"]["epochs_seconds"][1:2] or None
    part("overhead", lambda: overhead_run(device, args))
    record["overhead_ms_per_step"] = record["overhead"].get("overhead_ms_per_step")
    part("host_profile", lambda: host_profile(out.with_name(out.stem + "-host-profile.txt"),  # the batch-8 steps
                                              lambda: trainer_ms_per_step(device, args)))
    if device.type == "cuda":
        part("step_ms", lambda: step_against_floor(device, args, out.with_name(out.stem + "-kernels.txt")))
    part("speedrun", lambda: [train_process(args, "experiment=speedrun", f"seed={s}", accelerator)
                              for s in range(args.speedrun_seeds)])
    part("speedrun_warm_fits", lambda: warm_fits("speedrun", device, args))
    part("lab_elu", lambda: [train_process(args, "experiment=lab_elu", f"seed={42 + s}", accelerator)
                              for s in range(args.elu_seeds)])
    if args.elu_uncaptured:
        part("lab_elu_uncaptured", lambda: concurrently(
            [("experiment=lab_elu", f"seed={42 + s}", accelerator, "model.cuda_graph=false") for s in seeds], args))
    part("lab_elu_warm_fits", lambda: warm_fits("elu", device, args, runs=2))
    for setting in filter(None, args.sweep_launcher.split(";")):
        part(f"batch_size_sweep {setting.strip()}", lambda: sweep(args, accelerator, setting.strip()))
    sweeps = [v for k, v in record.items() if k.startswith("batch_size_sweep ") and v.get("jobs_ok") == 21]
    record["batch_size_sweep_s"] = min((v["seconds"] for v in sweeps), default=None)
    save()
    print(json.dumps({k: v for k, v in record.items() if k not in ("machine",)}, indent=1) + f"\nwrote {out}")
    return out


def concurrently(runs: list[tuple], args) -> list[dict]:
    """Several train.py processes at once (for their accuracies: their times share the device)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda overrides: train_process(args, *overrides), runs))


def sweep(args, accelerator: str, launcher: str) -> dict:
    """The 21-job batch_size sweep (7 batch sizes x 3 seeds, one epoch each) as a user starts it, with
    --sweep-launcher's setting: its wall time, process start-ups included."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "train.py", "-m", "sweep=batch_size", "seed=0,1,2", "trainer.max_epochs=1",
                   accelerator, *launcher.split(), f"hydra.sweep.dir={tmp}", f"data.data_dir={args.data_dir}",
                   *args.smoke_overrides]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        jobs = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("*/metrics.json"))]
    result = {"seconds": wall, "command": " ".join(command[1:-2 - len(args.smoke_overrides)]), "exit_status": done.returncode,
              "jobs_ok": sum(j.get("status") == "ok" for j in jobs), "jobs": len(jobs),
              "stderr_tail": done.stderr[-1500:] if done.returncode else ""}
    print(f"sweep: {result['jobs_ok']}/{result['jobs']} jobs in {wall:.1f} s (exit {done.returncode})", flush=True)
    return result


def git_commit() -> str | None:
    """HEAD, or MNIST_CNN_COMMIT where the checkout came without its .git (a copy sent to a GPU machine)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        head = ""
    return os.environ.get("MNIST_CNN_COMMIT") or head


# --- 4. the lab's epoch at two commits and in Keras; the speedrun ---------------------------------------

def lab_epoch(commit: str | None, precision: str, args) -> dict:
    """`python train.py trainer.max_epochs=1` (the lab's first run, one epoch) as a fresh process, at a
    commit (checked out in a temporary worktree) or at the working tree (None); its epoch from metrics.json."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path.cwd()
        if commit:
            root = Path(tmp) / "tree"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(root), commit], check=True)
        try:
            command = [sys.executable, "train.py", "trainer.max_epochs=1", f"trainer.precision={precision}",
                       "test=false", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp}/run",
                       f"data.data_dir={args.data_dir}"]
            start = time.perf_counter()
            subprocess.run(command, cwd=root, env={**os.environ, "PYTHONPATH": str(root / "src")}, check=True,
                           capture_output=True)
            wall = time.perf_counter() - start
            epoch = json.loads((Path(tmp) / "run" / "metrics.json").read_text())["history"][0]
        finally:
            if commit:
                subprocess.run(["git", "worktree", "remove", "--force", str(root)], check=True)
    return {"commit": commit or git_commit(), "precision": precision, "wall_seconds": wall,
            "epoch_seconds": epoch["train_seconds"] + epoch["val_seconds"], "val_acc": epoch["val_acc"]}


def keras_epoch(args) -> dict:
    out = subprocess.run([args.keras_python, str(Path(__file__).with_name("keras_lab.py")), "--data-dir", args.data_dir,
                          "--repeats", "1"], check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    return {**record, "commit": "keras", "precision": "float32", "epoch_seconds": record["epoch_seconds"][0]}


def lab_epochs(args) -> dict:
    """The baseline's one-epoch run at --against (the code before) and now, in bf16-mixed and 32-true,
    and the lab's Keras code (--keras-python), alternating, --rounds times; best of the rounds each."""
    runs = []
    for _ in range(args.rounds):
        for precision in ("bf16-mixed", "32-true"):
            for commit in (args.against, None):
                runs.append(lab_epoch(commit, precision, args))
                print(f"cpu   baseline epoch {runs[-1]['commit'][:7]} {precision:10} {runs[-1]['epoch_seconds']:6.1f} s",
                      flush=True)
        if args.keras_python:
            runs.append(keras_epoch(args))
            print(f"cpu   baseline epoch keras   float32    {runs[-1]['epoch_seconds']:6.1f} s", flush=True)
    best = {}
    for r in runs:
        key = f"{'keras' if r['commit'] == 'keras' else ('before' if r['commit'] == args.against else 'now')} {r['precision']}"
        best[key] = min(best.get(key, float("inf")), r["epoch_seconds"])
    return {"against": args.against, "runs": runs, "best_epoch_seconds": best}


def tuomaso_recipe(x_train, y_train, x_test, y_test) -> dict:
    """tuomaso/train_mnist_fast's final notebook (8_Final_00s76), as its plain loop runs it: all 60,000
    training images in order, batch 256, one epoch, float32, PyTorch's default initialisation,
    log_softmax + nll_loss, Adam(0.01, betas (0.7, 0.9)), OneCycleLR; tested at batch 2000. Its
    timed main() is model construction + training + test."""
    start = time.perf_counter()
    net = nn.Sequential(nn.Conv2d(1, 24, 5, 1), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(24, 32, 3, 1), nn.MaxPool2d(2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(800, 256), nn.ReLU(), nn.Linear(256, 10), nn.LogSoftmax(dim=1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.7, 0.9))
    steps = (len(x_train) - 1) // 256 + 1
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps, cycle_momentum=False)
    net.train()
    fit_start = time.perf_counter()
    for i in range(steps):
        optimizer.zero_grad()
        loss = F.nll_loss(net(x_train[256 * i : 256 * (i + 1)]), y_train[256 * i : 256 * (i + 1)])
        loss.backward()
        optimizer.step()
        schedule.step()
    fit = time.perf_counter() - fit_start
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(len(x_test) // 2000):
            correct += (net(x_test[2000 * i : 2000 * (i + 1)]).argmax(1) == y_test[2000 * i : 2000 * (i + 1)]).sum().item()
    return {"fit_seconds": fit, "main_seconds": time.perf_counter() - start, "test_acc": correct / len(x_test)}


def speedrun_config(args, *overrides):
    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        return compose("train", overrides=["experiment=speedrun", f"data.data_dir={args.data_dir}", *overrides])


def plain_speedrun(args, *overrides) -> tuple[float, float]:
    """experiment=speedrun's maths as a plain loop, on the data module's own device-resident batches: the
    same network and layout, bf16 autocast where the run uses it, Adam with the one-cycle schedule,
    cross-entropy, one epoch, then the validation pass. Seconds for the epoch (train + validation), and
    the validation accuracy."""
    cfg = speedrun_config(args, *overrides)
    L.seed_everything(cfg.seed, verbose=False)
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup()
    net = model.net.to(memory_format=torch.channels_last)
    bf16 = native_precision(cfg.trainer.precision, "cpu") == "bf16-mixed"
    batches = TensorBatches(datamodule.x_train, datamodule.y_train, cfg.data.batch_size, shuffle=True, seed=cfg.data.seed)
    options = cfg.model.optimizer
    optimizer = torch.optim.Adam(net.parameters(), lr=options.lr, betas=tuple(options.betas), fused=options.fused)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=len(batches),
                                                   cycle_momentum=False)
    start = time.perf_counter()
    net.train()
    for x, y in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    net.eval()
    correct = torch.zeros((), dtype=torch.long)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for x, y in TensorBatches(datamodule.x_val, datamodule.y_val, datamodule.evaluation_batch_size()):
            correct += (net(x).argmax(1) == y).sum()
    return time.perf_counter() - start, correct.item() / len(datamodule.y_val)


# The settings the speedrun's network was chosen from, by mean validation accuracy over 5 seeds.
SPEEDRUN_CHOICES = {
    "train_mnist_fast's network (conv 2: 32 filters)": ["model.conv2_channels=32"],
    "conv 2: 48 filters (chosen)": [],
    "conv 2: 64 filters": ["model.conv2_channels=64"],
    "conv 1: 32, conv 2: 64 filters": ["model.conv1_channels=32", "model.conv2_channels=64"],
    "peak lr 0.02": ["model.conv2_channels=32", "model.optimizer.lr=0.02"],
    "peak lr 0.007": ["model.conv2_channels=32", "model.optimizer.lr=0.007"],
    "betas (0.9, 0.95)": ["model.conv2_channels=32", "model.optimizer.betas=[0.9,0.95]"],
    "batch 128": ["model.conv2_channels=32", "data.batch_size=128"],
}


def speedrun_choice(args) -> dict:
    """Each setting's plain-loop epoch and validation accuracy over seeds 0-4 (validation decides)."""
    out = {}
    for name, overrides in SPEEDRUN_CHOICES.items():
        runs = [plain_speedrun(args, f"seed={seed}", *overrides) for seed in range(5)]
        out[name] = {"overrides": overrides, "val_acc_mean": statistics.mean(a for _, a in runs),
                     "epoch_seconds_median": statistics.median(t for t, _ in runs), "val_acc": [a for _, a in runs]}
        print(f"cpu   speedrun choice {name:45} val_acc {out[name]['val_acc_mean']:.4f}  "
              f"epoch {out[name]['epoch_seconds_median']:.2f} s", flush=True)
    return out


def trainer_speedrun(args) -> float:
    """The same epoch through the Trainer as `python train.py experiment=speedrun` builds it (checkpoints,
    logger, metrics; the data loaded first, as the plain loop's is). Seconds for the epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        return project_trainer("speedrun", "auto", torch.device("cpu"), args, tmp, preload=True).epochs[0][0]


def speedrun_process(seed: int, args) -> dict:
    """`python train.py experiment=speedrun seed=<seed>` as a user runs it: the whole process's wall time."""
    return {"seed": seed, **train_process(args, "experiment=speedrun", f"seed={seed}")}


def speedrun(args) -> dict:
    """The speedrun against tuomaso/train_mnist_fast's plain loop, on this machine in this run: 5 seeds of
    the whole process; the Trainer's epoch against the plain loop's (interleaved, best of --rounds each);
    the recipe's own loop (best of --rounds, and its test accuracies)."""
    raw_train, raw_test = datasets.MNIST(args.data_dir, train=True), datasets.MNIST(args.data_dir, train=False)
    x_train, x_test = normalize(raw_train.data, "standard"), normalize(raw_test.data, "standard")
    recipe, plain, project = [], [], []
    for _ in range(args.rounds):
        recipe.append(tuomaso_recipe(x_train, raw_train.targets, x_test, raw_test.targets))
        plain.append(plain_speedrun(args)[0])
        project.append(trainer_speedrun(args))
        print(f"cpu   speedrun: recipe fit {recipe[-1]['fit_seconds']:.2f} s (acc {recipe[-1]['test_acc']:.4f}), "
              f"plain loop epoch {plain[-1]:.2f} s, Trainer epoch {project[-1]:.2f} s", flush=True)
    runs = []
    for seed in range(5):  # each process beside a run of the recipe: this machine's speed drifts
        recipe.append(tuomaso_recipe(x_train, raw_train.targets, x_test, raw_test.targets))
        runs.append(speedrun_process(seed, args))
        r = runs[-1]
        print(f"cpu   speedrun seed {r['seed']}: test_acc {r['test_acc']:.4f}, fit {r['fit_seconds']:.2f} s, "
              f"process {r['process_seconds']:.2f} s; recipe fit {recipe[-1]['fit_seconds']:.2f} s", flush=True)
    accs = [r["test_acc"] for r in runs]
    pairs = [t / p for t, p in zip(project, plain)]
    return {
        "recipe": recipe, "recipe_best_fit_seconds": min(r["fit_seconds"] for r in recipe),
        "recipe_fit_seconds_median": statistics.median(r["fit_seconds"] for r in recipe),
        "recipe_test_acc_mean": statistics.mean(r["test_acc"] for r in recipe),
        "plain_epoch_seconds": plain, "trainer_epoch_seconds": project,
        "trainer_over_plain": min(project) / min(plain),
        # each round's two epochs ran back to back, so their ratio is the least touched by this VM's drift
        "trainer_over_plain_pairs": pairs, "trainer_over_plain_median_pair": statistics.median(pairs),
        "seeds": runs, "test_acc_mean": statistics.mean(accs), "test_acc_min": min(accs),
        "fit_seconds_median": statistics.median(r["fit_seconds"] for r in runs),
        "process_seconds_median": statistics.median(r["process_seconds"] for r in runs),
    }


def save_json(name: str, record: dict, args) -> Path:
    out = Path(args.out) / f"cpu-{datetime.date.today().isoformat()}-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": machine(torch.device("cpu")),
                               "commit": git_commit(), **record}, indent=2) + "\n")
    print(f"wrote {out}")
    return out


# --- the report -------------------------------------------------------------------------------------

def machine(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    capability = torch._C._cpu._get_cpu_capability() if hasattr(torch._C, "_cpu") else {}
    isa = {k: capability[k] for k in ("avx512_f", "avx512_bf16", "amx_bf16", "amx_tile") if k in capability}
    info = {"cpu": cpu, "cpu_isa": isa, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": L.__version__, "platform": platform.platform()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="throughput only, fewer windows")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--models", default="baseline,elu")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--max-epochs-to-target", type=int, default=15)
    parser.add_argument("--no-switches", action="store_true", help="CUDA: skip flipping each GPU switch alone")
    parser.add_argument("--switches-only", action="store_true", help="CUDA: only flip each GPU switch alone")
    parser.add_argument("--profile", action="store_true", help="only profile one epoch of the project path per run")
    parser.add_argument("--overhead", action="store_true", help="only the Trainer's cost per step at batch 8")
    parser.add_argument("--overhead-steps", type=int, default=400)
    parser.add_argument("--gpu-summary", action="store_true", help="write benchmarks/results/gpu-summary.json")
    parser.add_argument("--gpu-probe", action="store_true",
                        help="CUDA: the graphed step's own GPU time against the Trainer's step, per lab run")
    parser.add_argument("--probe-syncs", action="store_true",
                        help="--gpu-probe: only where the Trainer's graphed step synchronises, and a channels_last kernel table")
    parser.add_argument("--lab-epochs", action="store_true",
                        help="CPU: the baseline's epoch before (--against) and now, bf16 and fp32, and in Keras")
    parser.add_argument("--against", default="cfb48ad", help="--lab-epochs: the commit to compare with")
    parser.add_argument("--keras-python", help="--lab-epochs: a Python with tensorflow-cpu (see scripts/keras_lab.py)")
    parser.add_argument("--speedrun", action="store_true", help="CPU: experiment=speedrun against train_mnist_fast")
    parser.add_argument("--speedrun-choice", action="store_true", help="CPU: the speedrun settings compared")
    parser.add_argument("--rounds", type=int, default=2, help="--lab-epochs, --speedrun: alternating rounds")
    parser.add_argument("--sweep-launcher", default="hydra/launcher=joblib hydra.launcher.n_jobs=8",
                        help="--gpu-summary: the launcher setting of the timed batch_size sweep (several: ';' between)")
    parser.add_argument("--speedrun-seeds", type=int, default=5, help="--gpu-summary: speedrun processes")
    parser.add_argument("--elu-seeds", type=int, default=3, help="--gpu-summary: lab_elu processes")
    parser.add_argument("--elu-uncaptured", action=argparse.BooleanOptionalAction, default=True,
                        help="--gpu-summary: lab_elu's seeds uncaptured too, side by side (for their accuracies)")
    parser.add_argument("--smoke", action="store_true",
                        help="--gpu-summary: a few batches per run, to rehearse the GPU session (with --device cpu)")
    args = parser.parse_args()
    args.smoke_overrides = (["trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
                            if args.smoke else [])
    args.warmup, args.window, args.windows = (2, 6, 3) if args.quick else (3, 15, 5)
    ensure_mnist(args.data_dir)
    if args.lab_epochs or args.speedrun or args.speedrun_choice:
        if args.speedrun_choice:
            save_json("speedrun-choice", speedrun_choice(args), args)
        if args.lab_epochs:
            save_json("lab-epochs", lab_epochs(args), args)
        if args.speedrun:
            save_json("speedrun", speedrun(args), args)
        return
    if args.gpu_probe:
        gpu_probe(args)
        return
    if args.gpu_summary:
        args.window = 25
        gpu_summary(args)
        return

    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        if args.overhead:
            args.window = 25
            result = overhead_run(device, args)
            out = Path(args.out) / f"{device.type}-{datetime.date.today().isoformat()}-overhead.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"machine": machine(device), **result}, indent=2) + "\n")
            print(f"wrote {out}")
            continue
        if args.profile:
            texts = [profile_run(name, precision, device, args)
                     for name in args.models.split(",") for precision in args.precisions.split(",")]
            out = Path(args.out) / f"{device.type}-{datetime.date.today().isoformat()}-profile.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(texts))
            print("\n".join(texts) + f"\nwrote {out}")
            continue
        results = []
        for name in ([] if args.switches_only else args.models.split(",")):
            for precision in args.precisions.split(","):
                for path, run in (("plain", plain_run), ("project", project_run)):
                    r = run(name, precision, device, args)
                    r.update(model=name, precision=precision, path=path, batch_size=RUNS[name][2],
                             train_samples_per_second=statistics.median(r["windows"]))
                    results.append(r)
                    save(device, results, [], args)
                    print(f"{device.type:5} {name:9} {precision:5} {path:8} {r['train_samples_per_second']:9.0f} samples/s"
                          + (f"  epoch {r['epoch_seconds']:.2f} s" if "epoch_seconds" in r else ""), flush=True)
        switches = []
        if device.type == "cuda" and not (args.quick or args.no_switches):
            for name in args.models.split(","):
                for precision in args.precisions.split(","):
                    switches += switches_run(name, precision, device, args)
                    save(device, results, switches, args)
        report(device, results, switches, args)


def ratios(results: list[dict]) -> dict:
    rate = {(r["model"], r["precision"], r["path"]): r["train_samples_per_second"] for r in results}
    out = {}
    for (model, precision, path), value in rate.items():
        if path == "project" and (model, "fp32", "plain") in rate:
            out[f"{model} {precision} project / plain fp32"] = value / rate[(model, "fp32", "plain")]
            if (model, precision, "plain") in rate:
                out[f"{model} {precision} project / plain {precision}"] = value / rate[(model, precision, "plain")]
    return out


def save(device: torch.device, results: list[dict], switches: list[dict], args) -> Path:
    """Written after every measurement, so that a run cut short keeps what it measured."""
    date = datetime.date.today().isoformat()
    record = {"date": date, "device": device.type, "quick": args.quick, "machine": machine(device),
              "method": {"warmup_batches": args.warmup, "window_batches": args.window, "windows": args.windows},
              "results": results, "ratios": ratios(results), "switches": switches}
    out = Path(args.out) / f"{device.type}-{date}{'-quick' if args.quick else ''}{'-switches' if args.switches_only else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def report(device: torch.device, results: list[dict], switches: list[dict], args) -> None:
    out = save(device, results, switches, args)
    machine_info = machine(device)
    print(f"\n{device.type} ({machine_info.get('gpu', machine_info['cpu'])}), {datetime.date.today().isoformat()}")
    print(f"{'model':9} {'precision':9} {'path':8} {'samples/s':>10} {'epoch s':>8} {'to 99% s':>9} {'fit s':>7}")
    for r in results:
        epoch = f"{r['epoch_seconds']:.3f}" if "epoch_seconds" in r else "-"
        target = f"{r['time_to_target_seconds']:.1f}" if r.get("time_to_target_seconds") else "-"
        fit = f"{r['fit_seconds']:.1f}" if "fit_seconds" in r else "-"
        print(f"{r['model']:9} {r['precision']:9} {r['path']:8} {r['train_samples_per_second']:>10.0f} {epoch:>8} "
              f"{target:>9} {fit:>7}")
    for r in switches:
        print(f"{r['model']:9} {r['precision']:9} {r['switch']:20} {r['train_samples_per_second']:>10.0f} "
              f"{r['epoch_seconds']:>8.3f}")
    for key, value in ratios(results).items():
        print(f"  {key}: {value:.2f}x")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
