"""Every experiment and every model option trains through mnist-train's real entry point (a smoke run: one
batch of each stage, as lightning-hydra-template's tests/test_sweeps.py does), on small synthetic
Fashion-MNIST files so that the fast tier downloads nothing: each experiment's own settings but the dataset."""

import re
from pathlib import Path

import pytest
from runs import metrics_of, train_here
from synthetic import fake_fashion_mnist

import mnist_cnn.conf

CONF = Path(mnist_cnn.conf.__file__).parent
EXPERIMENTS = sorted((CONF / "experiment").glob("*.yaml"))
# the model options no experiment trains: the default's, and each one an experiment overrides, train with it
TRAINED = {"baseline"} | {m[1] for p in EXPERIMENTS if (m := re.search(r"override /model: (\w+)", p.read_text()))}
OPTIONS = [f"experiment={p.stem}" for p in EXPERIMENTS] + [
    f"model={p.stem}" for p in sorted((CONF / "model").glob("*.yaml")) if p.stem not in TRAINED
]


@pytest.mark.parametrize("option", OPTIONS)
def test_each_experiment_and_model_trains_a_smoke_batch(tmp_path, monkeypatch, option):
    fake_fashion_mnist(tmp_path, monkeypatch, n_train=600)
    run = tmp_path / "run"
    result = train_here(
        option,
        "data=fashion_mnist",
        f"data.data_dir={tmp_path / 'data'}",
        "trainer.fast_dev_run=true",
        "explain=false",
        "logger=csv",
        "callbacks.progress_bar.refresh_rate=0",
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = metrics_of(run)
    assert metrics["status"] == "ok" and metrics["epochs"] == 1 and metrics["test_acc"] is not None, metrics
