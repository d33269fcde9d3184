"""A network of one's own, as README shows it: a class in a folder of the user's and one YAML through
--config-dir, no package file edited. Its keys come from its constructor; it trains, and predict, explain and
export read its run, through the installed commands as real processes; a network with BatchNorm that is a
Sequential, and one with a residual connection that is not, both get the run's figures."""

import os
import sys
import textwrap
from pathlib import Path

import processes
import pytest
from PIL import Image
from runs import FEW_BATCHES, metrics_of, train_here
from torchvision.datasets import MNIST

NETS = '''
from typing import Annotated

from annotated_types import Ge, Interval
from torch import nn


class Residual(nn.Module):
    """A convolution with BatchNorm, a residual block, global pooling and one dense layer: no Sequential.

    Args:
        width: filters of every convolution
        dropout: dropout before the dense layer
    """

    def __init__(self, width: Annotated[int, Ge(1)] = 8, dropout: Annotated[float, Interval(ge=0, lt=1)] = 0.1,
                 *, input_shape, num_classes):
        super().__init__()
        self.stem = nn.Conv2d(input_shape[0], width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(2)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.pool(self.relu(self.norm(self.stem(x))))
        x = self.relu(x + self.conv(x))
        return self.out(self.drop(x.mean(dim=(2, 3))))


class ConvBN(nn.Sequential):
    """Two blocks of Conv, BatchNorm, ReLU, MaxPool, then a dense layer.

    Args:
        channels: filters of each convolution
    """

    def __init__(self, channels: Annotated[int, Ge(1)] = 4, *, input_shape, num_classes):
        c, h, w = input_shape
        super().__init__(nn.Conv2d(c, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(channels * (h // 4) * (w // 4), num_classes))
'''


def users_folder(root: Path, module: str) -> Path:
    """A user's folder: their module of networks, and configs/model/ with a YAML for each."""
    models = root / "configs" / "model"
    models.mkdir(parents=True)
    (root / f"{module}.py").write_text(NETS)
    (models / "residual.yaml").write_text(f"net:\n  _target_: {module}.Residual\n  width: 6\n")
    (models / "conv_bn.yaml").write_text(f"net:\n  _target_: {module}.ConvBN\noptimizer:\n  name: SGD\n  lr: 0.05\n")
    return root


@pytest.fixture
def student(tmp_path, monkeypatch):
    """The folder, importable in this process as it is for the commands through PYTHONPATH."""
    folder = users_folder(tmp_path / "mine", "student_nets")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("student_nets", None)


def test_its_mistakes_are_one_line_each_and_help_lists_its_keys(student, tmp_path):
    configs = str(student / "configs")
    cases = {
        "model.net.widht=4": "model.net.widht is not an argument of student_nets.Residual (it takes width, "
        "dropout); did you mean model.net.width?",
        "model.net.width=abc": "model.net.width=abc is not allowed: expected an integer",
        "model.net.width=0": "model.net.width=0 is not allowed: expected an integer >= 1",
        "model.net.dropout=1.5": "model.net.dropout=1.5 is not allowed: expected a number >= 0 and < 1",
        "model.width=4": "model.width is not a key of the model node: the network's arguments are "
        "model.net.<argument> (model.net.width), beside model.optimizer and model.schedule",
    }
    for i, (override, said) in enumerate(cases.items()):
        result = train_here("--config-dir", configs, "model=residual", override, f"hydra.run.dir={tmp_path / str(i)}")
        assert result.returncode == 2 and result.stderr == f"mnist-train: error: {said}\n", (override, result.stderr)
    shown = train_here("--config-dir", configs, "model=residual", "--help").stdout
    assert "  model.net.width: int = 6 " in shown and "filters of every convolution" in shown, shown
    assert "  model.net.dropout: float = 0.1 " in shown and "model.optimizer.name: str = Adam " in shown


@pytest.mark.slow  # trains
def test_a_sequential_with_batchnorm_trains_and_gets_its_figures(student, tmp_path, mnist_dir):
    run = tmp_path / "run"
    result = train_here(
        "--config-dir",
        str(student / "configs"),
        "model=conv_bn",
        *FEW_BATCHES,
        "explain=true",
        "logger=csv",
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(run)
    assert metrics["status"] == "ok" and metrics["model"] == "ConvBN" and metrics["test_acc"] is not None
    assert metrics["config"]["model"]["optimizer"]["name"] == "SGD"
    assert metrics["config"]["model"]["net"] == {"_target_": "student_nets.ConvBN", "channels": 4}
    for figure in ("filters", "feature_maps", "attributions"):
        assert (run / f"{figure}.png").stat().st_size > 5_000, figure


@pytest.mark.slow  # trains, and runs four installed commands
def test_a_network_of_ones_own_trains_predicts_explains_and_exports_through_the_installed_commands(tmp_path, mnist_dir):
    folder = users_folder(tmp_path / "mine", "residual_nets")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(folder)}
    run = tmp_path / "run"
    trained = processes.run(
        [
            bin_dir / "mnist-train",
            "--config-dir",
            folder / "configs",
            "model=residual",
            *FEW_BATCHES,
            "explain=true",
            "logger=tensorboard",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = metrics_of(run)
    assert metrics["status"] == "ok" and metrics["model"] == "Residual" and metrics["test_acc"] is not None
    for figure in ("filters", "feature_maps", "attributions"):
        assert (run / f"{figure}.png").stat().st_size > 5_000, figure
    assert list(run.rglob("projector_config.pbtxt")), "the Projector's embedding"

    seven = MNIST(mnist_dir, train=False).data[0].numpy()
    Image.fromarray(255 - seven).save(tmp_path / "seven.png")
    predicted = processes.run([bin_dir / "mnist-predict", run, tmp_path / "seven.png", "--json"], env=env)
    assert predicted.returncode == 0 and '"label": "' in predicted.stdout, predicted.stderr
    explained = processes.run(
        [bin_dir / "mnist-explain", run, tmp_path / "seven.png", "--out", tmp_path / "why"], env=env
    )
    assert explained.returncode == 0 and (tmp_path / "why" / "seven.explained.png").is_file(), explained.stderr
    exported = processes.run([bin_dir / "mnist-export", run, tmp_path / "mine.onnx"], env=env)
    assert exported.returncode == 0 and (tmp_path / "mine.onnx").stat().st_size > 1_000, exported.stderr

    elsewhere = processes.run(
        [bin_dir / "mnist-predict", run, tmp_path / "seven.png"],
        env={k: v for k, v in env.items() if k != "PYTHONPATH"},
    )
    said = textwrap.shorten(elsewhere.stderr, 10_000)
    assert elsewhere.returncode == 2 and len(elsewhere.stderr.strip().splitlines()) == 1, elsewhere.stderr
    assert "its network is residual_nets.Residual, which cannot be imported here" in said and "PYTHONPATH" in said
