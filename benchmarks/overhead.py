"""The Trainer's cost per step: `python train.py model=prose_cnn data.batch_size=8` through the Trainer
(checkpoint callback, logging and metrics included; validation off) against a plain loop doing exactly
the same maths on the same device-resident batches, interleaved, best of 3 each. On CUDA both capture
the step as a graph (the Trainer's default there), and the uncaptured pair is measured beside them.

    python -m benchmarks.overhead --device cpu     # benchmarks/results/cpu-<date>-overhead.json
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

from benchmarks.common import (
    Stamps,
    devices,
    optimiser_and_decay,
    parsed,
    parser,
    project_trainer,
    save_results,
    window_rates,
)
from mnist_cnn.data.module import MNISTDataModule, TensorBatches
from mnist_cnn.runs.build import lab_model
from mnist_cnn.training.graphed import GraphedStep
from mnist_cnn.training.speed import wants_channels_last

OVERHEAD_BATCH = 8  # small enough that the per-step cost of the framework shows against the maths


def plain_same_maths_ms(device: torch.device, args, graphed: bool = False) -> float:
    """Milliseconds per step of a plain loop doing exactly what the Trainer's step does, on the same
    device-resident batches: prose_cnn's forward (the project's module, its layout), cross-entropy, the
    epoch's loss and right-answer sums, backward, SGD with Nesterov momentum, the Keras decay.
    graphed: the step captured as the Trainer captures it on CUDA (mnist_cnn.training.graphed), in this plain loop."""
    datamodule = MNISTDataModule(args.data_dir, batch_size=OVERHEAD_BATCH, seed=42)
    datamodule.prepare_data()
    datamodule.setup()
    batches = TensorBatches(
        datamodule.x_train.to(device), datamodule.y_train.to(device), OVERHEAD_BATCH, shuffle=True, seed=42
    )
    torch.manual_seed(0)
    model = lab_model("prose_cnn").to(device)
    if wants_channels_last(None, device):
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
    variants = {
        "plain": lambda: plain_same_maths_ms(device, args, graphed=cuda),
        "project": lambda: trainer_ms_per_step(device, args),
    }
    if cuda:
        variants.update(
            {
                "plain_uncaptured": lambda: plain_same_maths_ms(device, args),
                "project_uncaptured": lambda: trainer_ms_per_step(device, args, "callbacks.speed.cuda_graph=false"),
            }
        )
    times = {name: [] for name in variants}
    for _ in range(3):
        for name, measure in variants.items():
            times[name].append(measure())
    best = {name: min(t) for name, t in times.items()}
    result = {
        "batch_size": OVERHEAD_BATCH,
        "model": "prose_cnn",
        "steps": args.overhead_steps,
        "plain_ms_per_step": best["plain"],
        "project_ms_per_step": best["project"],
        "overhead_ms_per_step": best["project"] - best["plain"],
        "ratio": best["project"] / best["plain"],
        "all_ms": times,
    }
    if cuda:
        result.update(
            plain_uncaptured_ms_per_step=best["plain_uncaptured"],
            project_uncaptured_ms_per_step=best["project_uncaptured"],
        )
    print(
        f"{device.type:5} overhead at batch {OVERHEAD_BATCH}: "
        + ", ".join(f"{name} {ms:.3f} ms/step" for name, ms in best.items())
        + f"; {result['ratio']:.2f}x",
        flush=True,
    )
    return result


def trainer_ms_per_step(device: torch.device, args, *overrides) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        timer = project_trainer(
            "elu",
            "fp32",
            device,
            args,
            tmp,
            "model=prose_cnn",
            f"data.batch_size={OVERHEAD_BATCH}",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={args.overhead_steps}",
            "trainer.limit_val_batches=0",
            *overrides,
        )
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


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--overhead-steps", type=int, default=400)
    args = parsed(p)
    args.window = 25
    for device in devices(args):
        save_results(args, device, "overhead", overhead_run(device, args))


if __name__ == "__main__":
    main()
