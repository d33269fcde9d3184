"""The real entry point on real MNIST (fetched through the project's chain), a few batches at a time."""

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from runs import FEW_BATCHES, metrics_of, needs_cuda, run_train, train_here
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.datasets import MNIST

from mnist_cnn.config.checks import native_precision
from mnist_cnn.data.fetch import OFFICIAL_SHA256
from mnist_cnn.data.module import normalize
from mnist_cnn.inference.loader import load_network
from mnist_cnn.models import networks

pytestmark = pytest.mark.slow  # each test trains

RUN_FILES = [
    "metrics.json",
    "model_summary.txt",
    "samples.png",
    "confusion_matrix.png",
    "confusion_matrix.csv",
    "classification_report.txt",
    "classification_report.json",
    "learning_curves.png",
    "misclassified.png",
    "filters.png",
    "feature_maps.png",
    "attributions.png",
]


PROGRESS = re.compile(r"(Sanity Checking|Training|Validation|Testing|Epoch \d+)\b.*(it/s|s/it|\?it)")


def console_lines(result) -> list[str]:
    """What a run printed, progress bars aside (tqdm redraws with carriage returns)."""
    text = (result.stdout + result.stderr).replace("\r", "\n").replace("\x1b[A", "")
    return [line for line in text.splitlines() if line.strip() and not PROGRESS.search(line)]


# the progress bar on, as a user sees it; fewer batches in an epoch than the logging interval
# and what the network learned, written (FEW_BATCHES leaves it out for the suite's time)
AS_SEEN = tuple(
    "trainer.log_every_n_steps=5" if o.startswith("trainer.log_every_n_steps") else o
    for o in FEW_BATCHES[:-1]
    if o not in ("explain=false", "figures=false")
)


def test_default_run_writes_every_report_file(tmp_path, mnist_dir):
    result = run_train(*AS_SEEN, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = console_lines(result)
    assert len(lines) <= 20, lines
    said = "\n".join(lines)
    for chatter in (
        "Tip",
        "GPU available",
        "TPU available",
        "Skipping",
        "transfer_batch_to_device",
        "LeafSpec",
        "Restoring states",
        "Seed set",
        "| Name",
        "Warning",
        "warn",
        "logging interval",
        ".py:",
    ):
        assert chatter not in said, (chatter, lines)
    assert "%|" not in result.stdout + result.stderr and "\r" not in result.stdout  # not a terminal: no bar
    test_lines = [line for line in lines if "Test accuracy" in line or "test_acc" in line]
    test_acc = metrics_of(tmp_path)["test_acc"]
    assert len(test_lines) == 1 and test_lines[0].startswith(f"Test accuracy {test_acc:.4f}, loss "), test_lines
    assert lines[-2] == f"Run directory: {tmp_path}"
    # after the fit, each stage named as it starts; the last line, the whole time and each stage's
    after_fit = lines[next(i for i, line in enumerate(lines) if line.startswith("Epoch 2/2")) + 1 :]
    assert [line.split(" ")[0] for line in after_fit] == [
        "Testing", "Test", "Drawing", "Explaining", "Recording", "Run", "Done"
    ], after_fit  # fmt: skip
    stages = metrics_of(tmp_path)["stages"]
    assert list(stages) == ["setup", "fit", "test", "figures", "explanations", "tracking", "total"], stages
    assert all(seconds > 0 for seconds in stages.values()) and stages["total"] >= sum(
        v for k, v in stages.items() if k != "total"
    )
    assert (
        lines[-1]
        == f"Done in {stages['total']:.1f} s ("
        + ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if k != "total")
        + ")"
    )
    assert metrics_of(tmp_path)["fit_seconds"] == pytest.approx(stages["fit"], abs=1e-3)
    assert [line.split(":")[0] for line in lines if line.startswith("Epoch ")] == ["Epoch 1/2", "Epoch 2/2"]
    logged = [line.partition("] - ")[2] for line in (tmp_path / "train.log").read_text().splitlines()]
    assert [line for line in logged if line.startswith("Epoch ")] == [
        line for line in lines if line.startswith("Epoch ")
    ]
    assert any(line.startswith("Data: MNIST, 42,000 train, 18,000 validation, 10,000 test images") for line in lines)
    assert any(line.startswith("Model: BaselineCNN, 1,199,882 parameters; CPU") for line in lines)
    for name in RUN_FILES:
        assert (tmp_path / name).stat().st_size > 0, name

    metrics = metrics_of(tmp_path)
    assert metrics["status"] == "ok" and metrics["model"] == "BaselineCNN" and metrics["parameters"] == 1_199_882
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert [(s["step"], s["epoch"]) for s in metrics["steps"]] == [(5, 1.25)]  # each logged step (every 5 here)
    assert 0.1 < metrics["test_acc"] <= 1 and metrics["test_loss"] > 0
    assert metrics["best_val_acc"] == max(h["val_acc"] for h in metrics["history"])
    assert metrics["history"][0]["train_samples"] == 4 * 256
    assert metrics["fit_seconds"] > 0 and metrics["train_samples_per_second"] > 0
    assert metrics["data_sha256"] == OFFICIAL_SHA256
    assert metrics["config"]["data"]["batch_size"] == 256 and metrics["config"]["seed"] == 42

    rows = list(csv.reader((tmp_path / "confusion_matrix.csv").open()))
    counts = [[int(v) for v in row[1:]] for row in rows[1:]]
    assert len(counts) == 10 and all(len(r) == 10 for r in counts)
    assert sum(map(sum, counts)) == 3 * 256  # limit_test_batches=3
    correct = sum(counts[i][i] for i in range(10)) / (3 * 256)
    assert correct == pytest.approx(metrics["test_acc"], abs=1e-6)
    report = json.loads((tmp_path / "classification_report.json").read_text())
    assert sorted(report["per_class"]) == [str(d) for d in range(10)]
    assert sum(c["support"] for c in report["per_class"].values()) == 3 * 256
    assert "weighted avg" in (tmp_path / "classification_report.txt").read_text()
    summary = (tmp_path / "model_summary.txt").read_text()
    assert "[N, 64, 12, 12]" in summary and "Total params: 1,199,882" in summary

    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and len(checkpoints) == 2
    assert metrics["best_checkpoint"].endswith(".ckpt")

    (event_file,) = tmp_path.rglob("events.out.tfevents.*")  # one file for fit, test and figures
    assert event_file.parent == tmp_path / "baseline" / "/".join(AS_SEEN)  # the run's folder, model, overrides
    events = EventAccumulator(str(event_file), size_guidance={"images": 0, "tensors": 0}).Reload()
    tags = events.Tags()
    assert {
        "loss/train_step",
        "loss/train",
        "accuracy/train",
        "loss/val",
        "accuracy/val",
        "loss/test",
        "accuracy/test",
        "lr",
        "hp/test_acc",
        "hp/best_val_acc",
    } <= set(tags["scalars"])
    assert "epoch" not in tags["scalars"]
    assert {
        "samples",
        "confusion_matrix",
        "learning_curves",
        "misclassified",
        "filters",
        "feature_maps",
        "attributions",
    } <= set(tags["images"])
    # the last hidden layer for the Projector: 1,000 test digits, each with its label and its image in the sprite
    assert "embeddings" in (event_file.parent / "projector_config.pbtxt").read_text()
    (metadata,) = event_file.parent.rglob("metadata.tsv")
    assert len(metadata.read_text().splitlines()) == 1000 and (metadata.parent / "sprite.png").exists()
    assert "custom_scalars__config__" in tags["tensors"]  # train and validation accuracy on one chart
    assert [e.value for e in events.Scalars("accuracy/val")] == pytest.approx(
        [h["val_acc"] for h in metrics["history"]]
    )
    assert session_hparams(event_file) == {
        "model": "BaselineCNN",
        "dataset": "mnist",
        "batch_size": 256,
        "validation_split": 0.3,
        "max_epochs": 2,
        "optimizer": "Adadelta",
        "lr": 1.0,
        "precision": native_precision("auto", "cpu"),
        "seed": 42,
    }
    assert metrics["precision"] == native_precision("auto", "cpu")

    # Tested in memory (the best checkpoint is the last epoch's): the checkpoint file scores the same.
    model, _ = load_network(metrics["best_checkpoint"])
    model.to(memory_format=torch.channels_last)  # as the run computed it on CPU
    data = MNIST(mnist_dir, train=False)
    x, y = normalize(data.data[: 3 * 256], "standard"), data.targets[: 3 * 256]
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=metrics["precision"] == "bf16-mixed"):
        predicted = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    assert (predicted == y).float().mean().item() == pytest.approx(metrics["test_acc"], abs=1e-6)


def test_speedrun_runs_one_cycle_and_checkpoints_at_the_epoch_end_only(tmp_path, mnist_dir):
    result = train_here(
        "experiment=speedrun",
        "trainer.limit_train_batches=120",
        *FEW_BATCHES[2:],
        "logger=csv",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["model"] == "SpeedrunCNN" and metrics["parameters"] == 321_066 and metrics["epochs"] == 1
    assert metrics["config"]["data"]["validation_split"] == 0.05 and metrics["test_acc"] > 0.9
    lrs = [
        float(row["lr-Adam"]) for row in csv.DictReader((tmp_path / "csv" / "metrics.csv").open()) if row.get("lr-Adam")
    ]
    assert lrs and max(lrs) < 0.01 / 25 + 1e-9  # logged at the epoch's start: the one-cycle warm-up's first value
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))[-1] == "last.ckpt"
    assert len(list((tmp_path / "checkpoints").glob("*.ckpt"))) == 2


def session_hparams(event_file) -> dict:
    """The HParams table's columns for this run, as TensorBoard's hparams plugin reads them."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    for event in EventFileLoader(str(event_file)).Load():
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                info = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                ).session_start_info
                return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
    return {}


@pytest.mark.parametrize("model, parameters", [("elu", 329_962), ("prose_cnn", 59_933)])
def test_other_models_train_and_test(tmp_path, mnist_dir, model, parameters):
    result = train_here(f"model={model}", *FEW_BATCHES, "logger=csv", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["parameters"] == parameters and metrics["test_acc"] is not None
    assert (tmp_path / "csv" / "metrics.csv").exists()
    lrs = [h["lr"] for h in metrics["history"]]
    assert lrs[-1] == pytest.approx(0.01 / (1 + 1e-6 * 8))  # Keras decay after 2 epochs x 4 steps


def test_in_a_terminal_the_bar_counts_epochs_as_the_epoch_lines_do(tmp_path, mnist_dir):
    result = train_here(*AS_SEEN, "logger=csv", f"hydra.run.dir={tmp_path}", terminal=True)
    assert result.returncode == 0, result.stderr[-3000:]
    bar = (result.stdout + result.stderr).replace("\r", "\n")
    assert re.search(r"^Epoch 2/2: 100%\|", bar, re.MULTILINE) and "v_num" not in bar and "Epoch 0" not in bar


def test_a_class_that_refuses_its_arguments_is_a_bug_not_a_config_mistake(tmp_path, monkeypatch):
    """A TypeError from a constructor (an argument it does not take) is not dressed as the user's mistake."""

    def refuses(self, **kwargs):
        raise TypeError("__init__() got an unexpected keyword argument 'conv1_channels'")

    monkeypatch.setattr(networks.BaselineCNN, "__init__", refuses)
    with pytest.raises(InstantiationException) as raised:
        train_here("logger=csv", f"hydra.run.dir={tmp_path}")
    assert isinstance(raised.value.__cause__, TypeError)
    assert metrics_of(tmp_path)["status"] == "failed"


def test_a_smoke_run_says_it_is_one_and_gives_no_test_accuracy(tmp_path, mnist_dir):
    result = train_here(
        "trainer.fast_dev_run=true", "logger=csv", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test accuracy" not in result.stdout
    assert (
        "Smoke run (trainer.fast_dev_run=True): every stage ran on 1 batch(es); its figures say the code runs, "
        "not how well the model learns" in result.stdout
    )


def test_bash_completes_config_groups_through_hydra(tmp_path):
    """`eval "$(mnist-train -sc install=bash)"`: Hydra's completion, which asks the command `-sc query=bash`."""
    installed = train_here("-sc", "install=bash")
    assert installed.returncode == 0 and "hydra_bash_completion" in installed.stdout, installed.stderr
    queried = train_here("-sc", "query=bash", env={"COMP_LINE": "mnist-train model=", "COMP_POINT": "18"})
    assert queried.returncode == 0 and queried.stdout.split() == [
        "model=baseline",
        "model=batchnorm",
        "model=elu",
        "model=prose_cnn",
        "model=speedrun",
    ], queried.stdout + queried.stderr


def test_multirun_trains_each_job_from_scratch_in_its_own_directory(tmp_path, mnist_dir):
    result = train_here(
        "-m", "data.batch_size=32,64", *FEW_BATCHES, "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [metrics_of(tmp_path / str(i)) for i in (0, 1)]
    assert [j["config"]["data"]["batch_size"] for j in jobs] == [32, 64]
    assert [j["history"][0]["train_samples"] for j in jobs] == [4 * 32, 4 * 64]
    assert {j["config"]["seed"] for j in jobs} == {42}


@pytest.mark.gpu
@needs_cuda
def test_gpu_run_keeps_the_data_on_the_device(tmp_path, mnist_dir):
    result = run_train(
        "experiment=lab_elu",
        "trainer.accelerator=gpu",
        "trainer.precision=bf16-mixed",
        *FEW_BATCHES,
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["device"].startswith("cuda") and metrics["precision"] == "bf16-mixed"
    assert ", on cuda" in (tmp_path / "train.log").read_text()
    assert 0.1 < metrics["test_acc"] <= 1


@pytest.mark.gpu
@needs_cuda
def test_gpu_switches_train(tmp_path, mnist_dir):
    """torch.compile, cudnn.benchmark and large evaluation batches together, on the GPU."""
    result = run_train(
        "trainer.accelerator=gpu",
        "trainer.precision=bf16-mixed",
        "callbacks.speed.compile=true",
        "trainer.benchmark=true",
        "trainer.deterministic=false",
        "data.eval_batch_size=5000",
        *FEW_BATCHES,
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["config"]["model"]["compile"] is True and metrics["device"].startswith("cuda")
    assert 0.1 < metrics["test_acc"] <= 1


def test_metrics_keep_every_epoch_when_the_tested_checkpoint_is_an_earlier_one(tmp_path, mnist_dir):
    """Testing from the best checkpoint restores callback states; the run's history must not shrink."""
    result = train_here(
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "callbacks.progress_bar.refresh_rate=0",
        "explain=false",
        "callbacks.checkpoint.mode=min",  # 'best' = the worst epoch: usually the first
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["epochs"] == 3 and [h["epoch"] for h in metrics["history"]] == [1, 2, 3]


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder made read-only as a shared dataset is: a read-only bind mount where we are root (root
    writes through permission bits), else the permission bits."""
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True, text=True
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot make a read-only folder here: {mounted.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def test_a_read_only_data_folder_that_holds_the_files_is_used(tmp_path, mnist_dir):
    data = tmp_path / "data"
    shutil.copytree(
        Path(mnist_dir) / "MNIST" / "raw", data / "MNIST" / "raw", ignore=shutil.ignore_patterns(".*", "*.bad-*")
    )
    with read_only(data):
        with pytest.raises(OSError):
            (data / "MNIST" / "raw" / "probe").write_text("")
        result = train_here(
            *FEW_BATCHES,
            "trainer.max_epochs=1",
            "logger=csv",
            f"data.data_dir={data}",
            f"hydra.run.dir={tmp_path / 'run'}",
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (data / "MNIST" / "raw").iterdir()) == sorted(OFFICIAL_SHA256)
    assert metrics_of(tmp_path / "run")["data_sha256"] == OFFICIAL_SHA256
