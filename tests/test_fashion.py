"""data=fashion_mnist: its chain of verified sources, and its class names wherever a run or predict
shows classes, on small synthetic IDX files (the real dataset's runs are in README)."""

import csv
import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image
from runs import in_process, train_here
from synthetic import fake_fashion_mnist
from torchvision.datasets import FashionMNIST

from mnist_cnn.cli import commands
from mnist_cnn.data import fetch as mnist_files
from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.data.fetch import MNISTUnavailable, ensure_fashion_mnist, raw_dir
from mnist_cnn.data.module import MNISTDataModule

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture
def debian(tmp_path, monkeypatch) -> dict[str, bytes]:
    """A stand-in for the Debian package's folder, its files made 'official'; torchvision unreachable."""
    return fake_fashion_mnist(tmp_path, monkeypatch)


def test_the_debian_package_is_the_fallback_and_torchvision_reads_its_files(tmp_path, debian):
    assert ensure_fashion_mnist(tmp_path / "data") == mnist_files.FASHION_SHA256
    raw = raw_dir(tmp_path / "data", "FashionMNIST")
    assert {p.name: p.read_bytes() for p in raw.glob("*-ubyte")} == debian
    assert FashionMNIST(str(tmp_path / "data"), train=True).data.shape == (300, 28, 28)
    assert not list(raw.glob(".*.tmp"))


def test_a_package_file_that_is_not_the_official_one_is_never_written(tmp_path, debian):
    (mnist_files.DEBIAN_FASHION_DIR / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the labels"))
    with pytest.raises(MNISTUnavailable, match="does not hold the official t10k-labels-idx1-ubyte"):
        ensure_fashion_mnist(tmp_path / "data")
    assert not (raw_dir(tmp_path / "data", "FashionMNIST") / "t10k-labels-idx1-ubyte").exists()


def test_every_source_failing_gives_one_error_naming_each_and_the_package(tmp_path, debian, monkeypatch):
    monkeypatch.setattr(mnist_files, "DEBIAN_FASHION_DIR", tmp_path / "not-installed")
    with pytest.raises(MNISTUnavailable) as error:
        ensure_fashion_mnist(tmp_path / "data")
    message = str(error.value)
    assert message.startswith("could not obtain Fashion-MNIST in ")
    assert "torchvision's mirrors: OSError: unreachable in this test" in message
    assert "the Debian package dataset-fashion-mnist" in message and "not installed" in message
    assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message


def test_the_data_module_uses_fashion_mnists_own_constants_and_names(tmp_path, debian):
    module = MNISTDataModule(data_dir=str(tmp_path / "data"), dataset="fashion_mnist", validation_split=0.3)
    module.prepare_data()
    module.setup("fit")
    raw = FashionMNIST(str(tmp_path / "data"), train=False).data
    assert torch.allclose(module.x_test[:, 0], (raw.float() / 255 - 0.2860) / 0.3530)
    assert module.classes == CLASSES == list(FashionMNIST.classes)
    assert (len(module.x_train), len(module.x_val)) == (210, 90)
    assert DATASETS["fashion_mnist"].title == "Fashion-MNIST"


@pytest.mark.slow  # trains
def test_a_fashion_run_and_predict_name_the_classes(tmp_path, debian):
    run = tmp_path / "run"
    trained = train_here(
        "data=fashion_mnist",
        f"data.data_dir={tmp_path / 'data'}",
        "data.batch_size=30",
        "trainer.max_epochs=1",
        "callbacks.progress_bar.refresh_rate=0",
        f"hydra.run.dir={run}",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    report = json.loads((run / "classification_report.json").read_text())
    assert list(report["per_class"]) == CLASSES
    rows = list(csv.reader((run / "confusion_matrix.csv").open()))
    assert rows[0][1:] == CLASSES and [r[0] for r in rows[1:]] == CLASSES
    assert "Ankle boot" in (run / "classification_report.txt").read_text()
    assert (run / "misclassified.png").stat().st_size > 0

    image = np.zeros((28, 28), dtype=np.uint8)
    image[6:8, 4:24] = 255  # the bar of class 2
    Image.fromarray(image).save(tmp_path / "bar.png")
    predicted = in_process(
        commands.predict, str(run / "checkpoints" / "last.ckpt"), str(tmp_path / "bar.png"), "--json"
    )
    (result,) = json.loads(predicted.stdout)
    assert result["label"] == CLASSES[result["class"]] and "digit" not in result
