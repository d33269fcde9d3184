"""experiment=speedrun against tuomaso/train_mnist_fast, in one run on this machine: the recipe's plain loop
as published, experiment=speedrun's epoch through the Trainer against a plain loop doing the same maths
on the same device-resident batches (interleaved, best of --rounds), and 5 seeds of
`python train.py experiment=speedrun` as whole processes: benchmarks/results/cpu-<date>-speedrun.json.
--choice: the settings the speedrun's network was chosen from, by validation accuracy over 5 seeds.

    python -m benchmarks.speedrun [--choice]
"""

from __future__ import annotations

import statistics
import tempfile
import time

import lightning as L
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F
from torchvision import datasets

from benchmarks.common import parsed, parser, project_trainer, save_results, train_process
from mnist_cnn.config.checks import native_precision
from mnist_cnn.data.module import TensorBatches, normalize
from mnist_cnn.runs.build import model_of


def tuomaso_recipe(x_train, y_train, x_test, y_test) -> dict:
    """tuomaso/train_mnist_fast's final notebook (8_Final_00s76), as its plain loop runs it: all 60,000
    training images in order, batch 256, one epoch, float32, PyTorch's default initialisation,
    log_softmax + nll_loss, Adam(0.01, betas (0.7, 0.9)), OneCycleLR; tested at batch 2000. Its
    timed main() is model construction + training + test."""
    start = time.perf_counter()
    net = nn.Sequential(
        nn.Conv2d(1, 24, 5, 1),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(24, 32, 3, 1),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(800, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
        nn.LogSoftmax(dim=1),
    )
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
            correct += (
                (net(x_test[2000 * i : 2000 * (i + 1)]).argmax(1) == y_test[2000 * i : 2000 * (i + 1)]).sum().item()
            )
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
    datamodule, model = instantiate(cfg.data), model_of(cfg.model, cfg.data.dataset)
    datamodule.prepare_data()
    datamodule.setup()
    net = model.net.to(memory_format=torch.channels_last)
    bf16 = native_precision(cfg.trainer.precision, "cpu") == "bf16-mixed"
    batches = TensorBatches(
        datamodule.x_train, datamodule.y_train, cfg.data.batch_size, shuffle=True, seed=cfg.data.seed
    )
    options = cfg.model.optimizer
    optimizer = torch.optim.Adam(net.parameters(), lr=options.lr, betas=tuple(options.betas), fused=options.fused)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=options.lr, total_steps=len(batches), cycle_momentum=False
    )
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
    "train_mnist_fast's network (conv 2: 32 filters)": ["model.net.conv2_channels=32"],
    "conv 2: 48 filters (chosen)": [],
    "conv 2: 64 filters": ["model.net.conv2_channels=64"],
    "conv 1: 32, conv 2: 64 filters": ["model.net.conv1_channels=32", "model.net.conv2_channels=64"],
    "peak lr 0.02": ["model.net.conv2_channels=32", "model.optimizer.lr=0.02"],
    "peak lr 0.007": ["model.net.conv2_channels=32", "model.optimizer.lr=0.007"],
    "betas (0.9, 0.95)": ["model.net.conv2_channels=32", "model.optimizer.betas=[0.9,0.95]"],
    "batch 128": ["model.net.conv2_channels=32", "data.batch_size=128"],
}


def speedrun_choice(args) -> dict:
    """Each setting's plain-loop epoch and validation accuracy over seeds 0-4 (validation decides)."""
    out = {}
    for name, overrides in SPEEDRUN_CHOICES.items():
        runs = [plain_speedrun(args, f"seed={seed}", *overrides) for seed in range(5)]
        out[name] = {
            "overrides": overrides,
            "val_acc_mean": statistics.mean(a for _, a in runs),
            "epoch_seconds_median": statistics.median(t for t, _ in runs),
            "val_acc": [a for _, a in runs],
        }
        print(
            f"cpu   speedrun choice {name:45} val_acc {out[name]['val_acc_mean']:.4f}  "
            f"epoch {out[name]['epoch_seconds_median']:.2f} s",
            flush=True,
        )
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
        print(
            f"cpu   speedrun: recipe fit {recipe[-1]['fit_seconds']:.2f} s (acc {recipe[-1]['test_acc']:.4f}), "
            f"plain loop epoch {plain[-1]:.2f} s, Trainer epoch {project[-1]:.2f} s",
            flush=True,
        )
    runs = []
    for seed in range(5):  # each process beside a run of the recipe: this machine's speed drifts
        recipe.append(tuomaso_recipe(x_train, raw_train.targets, x_test, raw_test.targets))
        runs.append(speedrun_process(seed, args))
        r = runs[-1]
        print(
            f"cpu   speedrun seed {r['seed']}: test_acc {r['test_acc']:.4f}, fit {r['fit_seconds']:.2f} s, "
            f"process {r['process_seconds']:.2f} s; recipe fit {recipe[-1]['fit_seconds']:.2f} s",
            flush=True,
        )
    accs = [r["test_acc"] for r in runs]
    pairs = [t / p for t, p in zip(project, plain)]
    return {
        "recipe": recipe,
        "recipe_best_fit_seconds": min(r["fit_seconds"] for r in recipe),
        "recipe_fit_seconds_median": statistics.median(r["fit_seconds"] for r in recipe),
        "recipe_test_acc_mean": statistics.mean(r["test_acc"] for r in recipe),
        "plain_epoch_seconds": plain,
        "trainer_epoch_seconds": project,
        "trainer_over_plain": min(project) / min(plain),
        # each round's two epochs ran back to back, so their ratio is the least touched by this VM's drift
        "trainer_over_plain_pairs": pairs,
        "trainer_over_plain_median_pair": statistics.median(pairs),
        "seeds": runs,
        "test_acc_mean": statistics.mean(accs),
        "test_acc_min": min(accs),
        "fit_seconds_median": statistics.median(r["fit_seconds"] for r in runs),
        "process_seconds_median": statistics.median(r["process_seconds"] for r in runs),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--choice", action="store_true", help="the speedrun settings compared")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    args = parsed(p)
    cpu = torch.device("cpu")
    if args.choice:
        save_results(args, cpu, "speedrun-choice", speedrun_choice(args))
    else:
        save_results(args, cpu, "speedrun", speedrun(args))


if __name__ == "__main__":
    main()
