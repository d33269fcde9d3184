"""Training speed, measured side by side in one process on the same machine and data:

1. a plain PyTorch loop written as pytorch/examples' mnist/main.py writes it (torchvision MNIST with
   ToTensor + Normalize, a DataLoader, the same network, optimiser and batch size);
2. the project's own Trainer path (the config `python train.py` composes, built by mnist_cnn.runs.run.Run).

For the lab's two runs (baseline at batch 256, ELU at batch 200), fp32 and bf16-mixed, on CPU and
on CUDA when present. Reports train samples per second (median of timed windows after a warm-up),
the wall time of one full epoch (train + validation) and, on CUDA, the time to 99.0% validation
accuracy; on CUDA each GPU switch is also flipped alone. Prints a table and writes
benchmarks/results/<device>-<date>-throughput.json.

    python -m benchmarks.throughput            # everything (about 15 minutes on 2 CPU cores)
    python -m benchmarks.throughput --quick    # throughput only, fewer windows (under 3 minutes)
    python -m benchmarks.throughput --profile  # where the host's time goes in one epoch of the project path
"""

from __future__ import annotations

import cProfile
import datetime
import gc
import io
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.nn import functional as F
from torchvision import datasets, transforms

from benchmarks.common import (
    RUNS,
    TARGET_VAL_ACC,
    Stamps,
    clock,
    devices,
    machine,
    optimiser_and_decay,
    parsed,
    parser,
    project_trainer,
    save_results,
    window_rates,
)
from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.models.layers import keras_order
from mnist_cnn.runs.build import lab_model

MNIST = DATASETS["mnist"]


def plain_loaders(data_dir: str, batch_size: int, device: torch.device):
    # Collect garbage before the workers fork: a forked worker that frees an inherited CUDA event or
    # tensor left over from an earlier run aborts with "CUDA error: initialization error".
    gc.collect()
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST.mean,), (MNIST.std,))])
    full = datasets.MNIST(data_dir, train=True, transform=transform)
    train_set, val_set = torch.utils.data.random_split(full, [42000, 18000], generator=torch.Generator().manual_seed(0))
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, **kwargs)
    val = torch.utils.data.DataLoader(val_set, batch_size=1000, **kwargs)
    return train, val


def plain_model(name: str, device: torch.device):
    """The same layers, initialisation and optimiser, as stock PyTorch: Keras's layer order, nn.Dropout,
    nn.Flatten, the default layout."""
    torch.manual_seed(0)
    module = lab_model({"baseline": "baseline", "elu": "elu", "speedrun": "speedrun"}[name])
    net = keras_order(module.net).to(device)
    return (net, *optimiser_and_decay(module))  # over the same parameter objects as net


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
    _, batch_size = RUNS[name]
    bf16 = precision == "bf16"
    train, val = plain_loaders(args.data_dir, batch_size, device)
    net, optimizer, schedule = plain_model(name, device)
    n = args.warmup + args.windows * args.window
    stamps = plain_train(net, optimizer, schedule, train, device, bf16, max_batches=n)
    result = {"windows": window_rates(stamps, batch_size, args.warmup, args.window)}
    if not args.quick:
        start = clock(device)
        plain_train(net, optimizer, schedule, train, device, bf16)
        plain_validate(net, val, device, bf16)
        result["epoch_seconds"] = clock(device) - start
    if device.type == "cuda" and not args.quick and precision == "fp32":  # pytorch/examples' loop is fp32
        net, optimizer, schedule = plain_model(name, device)
        start, acc, epochs = clock(device), 0.0, 0
        while acc < TARGET_VAL_ACC and epochs < args.max_epochs_to_target:
            plain_train(net, optimizer, schedule, train, device, bf16)
            acc, epochs = plain_validate(net, val, device, bf16), epochs + 1
        result.update(
            time_to_target_seconds=clock(device) - start if acc >= TARGET_VAL_ACC else None,
            epochs_to_target=epochs,
            final_val_acc=acc,
        )
    return result


def project_run(name, precision, device, args) -> dict:
    batch_size = RUNS[name][1]
    n = args.warmup + args.windows * args.window
    with tempfile.TemporaryDirectory() as tmp:
        timer = project_trainer(
            name,
            precision,
            device,
            args,
            tmp,
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={n}",
            "trainer.limit_val_batches=0",
            "~callbacks.checkpoint",
        )
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
        result.update(
            fit_seconds=time.perf_counter() - start,
            epoch_seconds=timer.epochs[1][0],
            first_epoch_seconds=timer.epochs[0][0],
            fit_epochs=len(timer.epochs),
        )
        stop = EarlyStopping(monitor="val_acc", mode="max", stopping_threshold=TARGET_VAL_ACC, patience=10**6)
        timer = project_trainer(
            name, precision, device, args, tmp, f"trainer.max_epochs={args.max_epochs_to_target}", callbacks=(stop,)
        )
        acc = timer.epochs[-1][1]
        result.update(
            time_to_target_seconds=sum(t for t, _ in timer.epochs) if acc >= TARGET_VAL_ACC else None,
            epochs_to_target=len(timer.epochs),
            final_val_acc=acc,
        )
    return result


# Each GPU switch flipped alone against the shipped config, so each is kept only for a measured gain.
SWITCHES = {
    "as shipped": [],
    "channels_last off": ["callbacks.speed.channels_last=false"],
    "cudnn.benchmark on": ["trainer.benchmark=true"],
    "deterministic off": ["trainer.deterministic=false"],
    "compile on": ["callbacks.speed.compile=true"],
    "eval batch 6000": ["data.eval_batch_size=6000"],
}


def switches_run(name, precision, device, args) -> list[dict]:
    batch_size, results = RUNS[name][1], []
    for switch, overrides in SWITCHES.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            timer = project_trainer(
                name, precision, device, args, tmp, "trainer.max_epochs=2", "~callbacks.checkpoint", *overrides
            )
            fit_seconds = time.perf_counter() - start
        stamps = timer.stamps
        epoch1 = stamps[len(stamps) // 2 :]  # the second epoch's batches: warm, compiled
        rates = window_rates(epoch1, batch_size, 0, args.window)
        results.append(
            {
                "model": name,
                "precision": precision,
                "switch": switch,
                "overrides": overrides,
                "train_samples_per_second": statistics.median(rates),
                "epoch_seconds": timer.epochs[1][0],
                "first_epoch_seconds": timer.epochs[0][0],
                "fit_seconds": fit_seconds,
            }
        )
        print(
            f"{device.type:5} {name:9} {precision:5} {switch:20} {results[-1]['train_samples_per_second']:9.0f} "
            f"samples/s  epoch {timer.epochs[1][0]:.3f} s (first {timer.epochs[0][0]:.2f} s)",
            flush=True,
        )
    return results


def profile_run(name, precision, device, args) -> str:
    """Where the host's time goes in one epoch of the project path (cProfile, top functions by own time):
    on a GPU this small model leaves the device waiting on Python, so the host profile is the one that counts."""
    with tempfile.TemporaryDirectory() as tmp:
        project_trainer(
            name,
            precision,
            device,
            args,
            tmp,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=20",
            "trainer.limit_val_batches=2",
            "~callbacks.checkpoint",
        )  # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        project_trainer(name, precision, device, args, tmp, "trainer.max_epochs=1")
        profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    return f"== {device.type} {name} {precision}: one epoch of the project path ==\n" + text.getvalue()


def ratios(results: list[dict]) -> dict:
    rate = {(r["model"], r["precision"], r["path"]): r["train_samples_per_second"] for r in results}
    out = {}
    for (model, precision, path), value in rate.items():
        if path == "project" and (model, "fp32", "plain") in rate:
            out[f"{model} {precision} project / plain fp32"] = value / rate[(model, "fp32", "plain")]
            if (model, precision, "plain") in rate:
                out[f"{model} {precision} project / plain {precision}"] = value / rate[(model, precision, "plain")]
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
        print(
            f"{r['model']:9} {r['precision']:9} {r['path']:8} {r['train_samples_per_second']:>10.0f} {epoch:>8} "
            f"{target:>9} {fit:>7}"
        )
    for r in switches:
        print(
            f"{r['model']:9} {r['precision']:9} {r['switch']:20} {r['train_samples_per_second']:>10.0f} "
            f"{r['epoch_seconds']:>8.3f}"
        )
    for key, value in ratios(results).items():
        print(f"  {key}: {value:.2f}x")
    print(f"wrote {out}")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="throughput only, fewer windows")
    p.add_argument("--models", default="baseline,elu")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--max-epochs-to-target", type=int, default=15)
    p.add_argument("--no-switches", action="store_true", help="CUDA: skip flipping each GPU switch alone")
    p.add_argument("--switches-only", action="store_true", help="CUDA: only flip each GPU switch alone")
    p.add_argument("--profile", action="store_true", help="only profile one epoch of the project path per run")
    args = parsed(p, quick=p.parse_args().quick)
    for device in devices(args):
        if args.profile:
            texts = [
                profile_run(name, precision, device, args)
                for name in args.models.split(",")
                for precision in args.precisions.split(",")
            ]
            out = Path(args.out) / f"{device.type}-{datetime.date.today().isoformat()}-profile.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(texts))
            print("\n".join(texts) + f"\nwrote {out}")
            continue
        results, switches = [], []
        for name in [] if args.switches_only else args.models.split(","):
            for precision in args.precisions.split(","):
                for path, run in (("plain", plain_run), ("project", project_run)):
                    r = run(name, precision, device, args)
                    r.update(
                        model=name,
                        precision=precision,
                        path=path,
                        batch_size=RUNS[name][1],
                        train_samples_per_second=statistics.median(r["windows"]),
                    )
                    results.append(r)
                    save(device, results, switches, args)
                    print(
                        f"{device.type:5} {name:9} {precision:5} {path:8} {r['train_samples_per_second']:9.0f} samples/s"
                        + (f"  epoch {r['epoch_seconds']:.2f} s" if "epoch_seconds" in r else ""),
                        flush=True,
                    )
        if device.type == "cuda" and not (args.quick or args.no_switches):
            for name in args.models.split(","):
                for precision in args.precisions.split(","):
                    switches += switches_run(name, precision, device, args)
                    save(device, results, switches, args)
        report(device, results, switches, args)


def save(device: torch.device, results: list[dict], switches: list[dict], args) -> Path:
    question = "throughput" + ("-quick" if args.quick else "") + ("-switches" if args.switches_only else "")
    record = {
        "quick": args.quick,
        "method": {"warmup_batches": args.warmup, "window_batches": args.window, "windows": args.windows},
        "results": results,
        "ratios": ratios(results),
        "switches": switches,
    }
    return save_results(args, device, question, record, quiet=True)


if __name__ == "__main__":
    main()
