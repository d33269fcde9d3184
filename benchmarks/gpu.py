"""On a CUDA machine, everything the GPU issue asks, in one run (benchmarks/results/gpu-summary.json):
the lab_baseline warm epoch (train + validation, with the run's checkpointing), lab_elu's whole fit, the
wall time of the 21-job batch_size sweep (process start-ups included, with --sweep-launcher's setting),
the Trainer's overhead per step over the plain loop on the GPU, and where a graphed step's time goes
(--probe: the graph's own GPU time per step against the Trainer's step, with settings flipped one at a
time, and their kernel and host profiles). With --device cpu --smoke: the same code on a few batches, a
rehearsal of the GPU session on a machine without one.

    python -m benchmarks.gpu                    # the summary
    python -m benchmarks.gpu --probe [--probe-syncs]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import RUNS, machine, parsed, parser, project_trainer, save_results, train_process
from benchmarks.gpu_step import (
    FLOOR_VARIANTS,
    TRAINER_VARIANTS,
    graph_floor,
    step_against_floor,
    sync_sources,
    trainer_step_ms,
)
from benchmarks.overhead import host_profile, overhead_run, trainer_ms_per_step

# The lab's baseline on the GPU: graphed and not, each precision, and two switches on the graphed step.
LAB_VARIANTS = {
    "auto graphed": ("auto", []),
    "auto uncaptured": ("auto", ["callbacks.speed.cuda_graph=false"]),
    "fp32 graphed": ("fp32", []),
    "fp32 uncaptured": ("fp32", ["callbacks.speed.cuda_graph=false"]),
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
        out[variant] = {
            "overrides": overrides,
            "fit_seconds": fit,
            "epochs_seconds": [t for t, _ in timer.epochs],
            "val_acc": [a for _, a in timer.epochs],
            "step_ms_median": 1000 * statistics.median(steps) if steps else None,
        }
        r = out[variant]
        print(
            f"{device.type:5} {name:9} {variant:34} epochs "
            + " ".join(f"{t:.3f}" for t in r["epochs_seconds"])
            + f" s, fit {fit:.2f} s, step {r['step_ms_median'] or 0:.3f} ms",
            flush=True,
        )
    return out


def warm_fits(name: str, device: torch.device, args, runs: int = 3) -> list[dict]:
    """The run's trainer.fit in a process that has already trained once (CUDA, cuDNN and the kernels loaded):
    what the fit costs beyond a process's one-time start-up."""
    fits = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            timer = project_trainer(name, "auto", device, args, tmp, *args.smoke_overrides)
            fits.append(
                {
                    "fit_seconds": time.perf_counter() - start,
                    "epochs_seconds": [t for t, _ in timer.epochs],
                    "val_acc": [a for _, a in timer.epochs],
                }
            )
        print(
            f"{device.type:5} {name} fit in a warm process: {fits[-1]['fit_seconds']:.3f} s, epochs "
            + " ".join(f"{t:.3f}" for t in fits[-1]["epochs_seconds"]),
            flush=True,
        )
    return fits[1:]  # the first loads what the later ones find loaded


def gpu_probe(args) -> Path:
    """What a graphed step waits on: for each lab run, the graph's own time per step (graph_floor) beside
    the Trainer's step, with settings flipped one at a time; and their kernel and host profiles."""
    device = torch.device("cuda")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"floor_ms": {}, "trainer_ms": {}}
    path = out / "gpu-probe.json"
    if args.probe_syncs:
        record["syncs"] = {
            "baseline": sync_sources("baseline", device, args),
            "speedrun": sync_sources("speedrun", device, args),
        }
        graph_floor(
            "baseline", device, "bf16 channels_last", profile_to=out / "gpu-probe-baseline-channels-last-kernels.txt"
        )
        save_results(args, device, "gpu-probe", record, quiet=True)
        print(json.dumps(record["syncs"], indent=1))
        return path
    for name in RUNS:
        record["floor_ms"][name] = {
            v: graph_floor(name, device, v, profile_to=out / f"gpu-probe-{name}-kernels.txt" if v == "bf16" else None)
            for v in FLOOR_VARIANTS
        }
        print(name, "floor", {k: round(v, 3) for k, v in record["floor_ms"][name].items()}, flush=True)
        save_results(args, device, "gpu-probe", record, quiet=True)
    for name in RUNS:
        record["trainer_ms"][name] = {v: trainer_step_ms(name, device, args, *o) for v, o in TRAINER_VARIANTS.items()}
        print(name, "trainer", {k: round(v, 3) for k, v in record["trainer_ms"][name].items()}, flush=True)
        save_results(args, device, "gpu-probe", record, quiet=True)
    host_profile(
        out / "gpu-probe-host-profile.txt",
        lambda: trainer_step_ms("baseline", device, args),
        lines=60,
        orders=("tottime", "cumulative"),
    )
    save_results(args, device, "gpu-probe", record, quiet=True)
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=1))
    return path


def gpu_summary(args) -> Path:
    """Everything issue 18 asks of a GPU, in one run: benchmarks/results/gpu-summary.json (with --device cpu
    and --smoke, the same code on a few batches: a rehearsal of the GPU session on a machine without one)."""
    device = torch.device("cpu" if args.device == "cpu" else "cuda")
    question = "gpu-summary" + ("-smoke" if args.smoke else "")
    name = "gpu-summary.json" if device.type == "cuda" else "cpu-gpu-summary-smoke.json"  # the GPU issue reads these
    out = Path(args.out) / f"{device.type}-{question}-files"
    record = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else machine(device)["cpu"],
        "smoke": bool(args.smoke_overrides),
    }
    accelerator = f"trainer.accelerator={device.type.replace('cuda', 'gpu')}"
    seeds = range(args.elu_seeds)

    def save() -> None:
        save_results(args, device, question, record, quiet=True, name=name)

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
    out.mkdir(parents=True, exist_ok=True)
    part(
        "host_profile",
        lambda: host_profile(
            out / "host-profile.txt",  # the batch-8 steps
            lambda: trainer_ms_per_step(device, args),
        ),
    )
    if device.type == "cuda":
        part("step_ms", lambda: step_against_floor(device, args, out / "kernels.txt"))
    part(
        "speedrun",
        lambda: [
            train_process(args, "experiment=speedrun", f"seed={s}", accelerator) for s in range(args.speedrun_seeds)
        ],
    )
    part("speedrun_warm_fits", lambda: warm_fits("speedrun", device, args))
    part(
        "lab_elu",
        lambda: [
            train_process(args, "experiment=lab_elu", f"seed={42 + s}", accelerator) for s in range(args.elu_seeds)
        ],
    )
    if args.elu_uncaptured:
        part(
            "lab_elu_uncaptured",
            lambda: concurrently(
                [
                    ("experiment=lab_elu", f"seed={42 + s}", accelerator, "callbacks.speed.cuda_graph=false")
                    for s in seeds
                ],
                args,
            ),
        )
    part("lab_elu_warm_fits", lambda: warm_fits("elu", device, args, runs=2))
    for setting in filter(None, args.sweep_launcher.split(";")):
        part(f"batch_size_sweep {setting.strip()}", lambda setting=setting: sweep(args, accelerator, setting.strip()))
    sweeps = [v for k, v in record.items() if k.startswith("batch_size_sweep ") and v.get("jobs_ok") == 21]
    record["batch_size_sweep_s"] = min((v["seconds"] for v in sweeps), default=None)
    print(json.dumps(record, indent=1))
    return save_results(args, device, question, record, name=name)


def concurrently(runs: list[tuple], args) -> list[dict]:
    """Several train.py processes at once (for their accuracies: their times share the device)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda overrides: train_process(args, *overrides), runs))


def sweep(args, accelerator: str, launcher: str) -> dict:
    """The 21-job batch_size sweep (7 batch sizes x 3 seeds, one epoch each) as a user starts it, with
    --sweep-launcher's setting: its wall time, process start-ups included."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "train.py",
            "-m",
            "sweep=batch_size",
            "seed=0,1,2",
            "trainer.max_epochs=1",
            accelerator,
            *launcher.split(),
            f"hydra.sweep.dir={tmp}",
            f"data.data_dir={args.data_dir}",
            *args.smoke_overrides,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        jobs = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("*/metrics.json"))]
    result = {
        "seconds": wall,
        "command": " ".join(command[1 : -2 - len(args.smoke_overrides)]),
        "exit_status": done.returncode,
        "jobs_ok": sum(j.get("status") == "ok" for j in jobs),
        "jobs": len(jobs),
        "stderr_tail": done.stderr[-1500:] if done.returncode else "",
    }
    print(f"sweep: {result['jobs_ok']}/{result['jobs']} jobs in {wall:.1f} s (exit {done.returncode})", flush=True)
    return result


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--probe", action="store_true", help="the graphed step's own GPU time against the Trainer's step")
    p.add_argument(
        "--probe-syncs",
        action="store_true",
        help="--probe: only where the Trainer's graphed step synchronises, and a channels_last kernel table",
    )
    p.add_argument("--overhead-steps", type=int, default=400)
    p.add_argument(
        "--sweep-launcher",
        default="hydra/launcher=joblib hydra.launcher.n_jobs=8",
        help="the launcher setting of the timed batch_size sweep (several: ';' between)",
    )
    p.add_argument("--speedrun-seeds", type=int, default=5, help="speedrun processes")
    p.add_argument("--elu-seeds", type=int, default=3, help="lab_elu processes")
    p.add_argument(
        "--elu-uncaptured",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lab_elu's seeds uncaptured too, side by side (for their accuracies)",
    )
    args = parsed(p)
    args.window = 25
    if args.probe:
        gpu_probe(args)
    else:
        gpu_summary(args)


if __name__ == "__main__":
    main()
