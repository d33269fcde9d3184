"""What the benchmark modules share: the lab's runs, timing on the device's own clock, the project's
Trainer path as mnist-train builds it, a whole `python train.py` process, the machine's description and
one way of writing results (with the code's provenance, atomically). Each question is its own module:

    python -m benchmarks.throughput   # a plain PyTorch loop against the project's Trainer path, per lab run
    python -m benchmarks.overhead     # the Trainer's cost per step at batch 8
    python -m benchmarks.gpu          # on a CUDA machine: the GPU summary and probe
    python -m benchmarks.lab_epochs --against <commit>   # the lab's epoch at a commit, now, and in Keras
    python -m benchmarks.speedrun     # experiment=speedrun against tuomaso/train_mnist_fast
    python -m benchmarks.startup      # each command's --help, and mnist-predict against `import torch`

Results: benchmarks/results/<device>-<date>-<question>.json. Run from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
import torchvision
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig

from mnist_cnn.atomic import write_atomically
from mnist_cnn.data.datasets import default_data_dir
from mnist_cnn.data.fetch import ensure_mnist
from mnist_cnn.runs.provenance import provenance
from mnist_cnn.runs.run import Run

RUNS = {"baseline": ("lab_baseline", 256), "elu": ("lab_elu", 200), "speedrun": ("speedrun", 256)}
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
    return [window * batch_size / (stamps[i + window] - stamps[i]) for i in range(warmup, len(stamps) - window, window)]


def optimiser_and_decay(module):
    config = module.configure_optimizers()
    if isinstance(config, torch.optim.Optimizer):
        return config, None
    if isinstance(config, dict):
        return config["optimizer"], config["lr_scheduler"]["scheduler"]
    (optimizer,), (schedule,) = config
    return optimizer, schedule


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
    """The run as mnist-train builds it (mnist_cnn.runs.run.Run), fitted; preload: the data loaded before the clock starts."""
    experiment, _ = RUNS[name]
    with initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        cfg = compose(
            "train",
            return_hydra_config=True,
            overrides=[
                f"experiment={experiment}",
                f"trainer.precision={PRECISIONS[precision]}",
                f"trainer.accelerator={device.type.replace('cuda', 'gpu')}",
                f"data.data_dir={args.data_dir}",
                "callbacks.progress_bar.refresh_rate=0",
                "trainer.num_sanity_val_steps=0",
                f"hydra.runtime.output_dir={out_dir}",
                *overrides,
            ],
        )
    HydraConfig.instance().set_config(cfg)
    timer = BatchClock(device)
    run = Run.build(cfg, extra_callbacks=(timer, *callbacks))
    if preload:
        run.datamodule.prepare_data()
        run.datamodule.setup()
    run.trainer.fit(run.model, datamodule=run.datamodule)
    return timer


def train_process(args, *overrides, env: dict | None = None) -> dict:
    """`python train.py <overrides>` as a user runs it: its metrics.json, with the whole process's wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "train.py",
            *overrides,
            f"hydra.run.dir={tmp}",
            f"data.data_dir={args.data_dir}",
            *args.smoke_overrides,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
        wall = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"{' '.join(overrides)}: exit {done.returncode}: {done.stderr[-1500:]}")
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    return {
        "overrides": list(overrides),
        "process_seconds": wall,
        "fit_seconds": metrics["fit_seconds"],
        "test_acc": metrics["test_acc"],
        "best_val_acc": metrics["best_val_acc"],
        "precision": metrics["precision"],
        "epochs": metrics["epochs"],
        "train_seconds": [e["train_seconds"] for e in metrics["history"]],
        "val_seconds": [e["val_seconds"] for e in metrics["history"]],
    }


@contextlib.contextmanager
def checkout(commit: str | None, folder: Path) -> Iterator[Path]:
    """The code at `commit`, checked out in a temporary git worktree under `folder` (its own conf/ linked as the
    package mnist_cnn.conf, ahead of the installed checkout's: run it with PYTHONPATH=<tree>/src), removed after;
    None: the working tree itself."""
    if not commit:
        yield Path.cwd()
        return
    root = folder / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(root), commit], check=True)
    (root / "src" / "mnist_cnn" / "conf").symlink_to(root / "conf")
    try:
        yield root
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(root)], check=True)


def machine(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    capability = torch._C._cpu._get_cpu_capability() if hasattr(torch._C, "_cpu") else {}
    isa = {k: capability[k] for k in ("avx512_f", "avx512_bf16", "amx_bf16", "amx_tile") if k in capability}
    info = {
        "cpu": cpu,
        "cpu_isa": isa,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; each module adds its own."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--smoke", action="store_true", help="a few batches per run: a rehearsal (with --device cpu)")
    return p


def parsed(p: argparse.ArgumentParser, quick: bool = False) -> argparse.Namespace:
    args = p.parse_args()
    args.smoke_overrides = (
        ["trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
        if args.smoke
        else []
    )
    args.warmup, args.window, args.windows = (2, 6, 3) if quick else (3, 15, 5)
    ensure_mnist(args.data_dir)
    return args


def devices(args) -> list[torch.device]:
    found = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        found.append(torch.device("cuda"))
    return found


def code() -> dict:
    """The code that ran (mnist_cnn.runs.run.provenance); MNIST_CNN_COMMIT where the checkout came without its
    .git (a copy sent to a GPU machine)."""
    found = provenance()
    return {**found, "git_commit": os.environ.get("MNIST_CNN_COMMIT") or found["git_commit"]}


def save_results(
    args, device: torch.device, question: str, record: dict, quiet: bool = False, name: str | None = None
) -> Path:
    """benchmarks/results/<device>-<date>-<question>.json (or `name`): the record, with the date, the machine
    and the code that measured it; written atomically, and again after every part, so a run cut short keeps
    what it measured."""
    date = datetime.date.today().isoformat()
    out = Path(args.out) / (name or f"{device.type}-{date}-{question}.json")
    full = {"date": date, "machine": machine(device), "code": code(), **record}
    out.parent.mkdir(parents=True, exist_ok=True)  # --out names a folder to write into, made if need be
    write_atomically(out, json.dumps(full, indent=2) + "\n")
    if not quiet:
        print(f"wrote {out}")
    return out
