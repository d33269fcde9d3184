"""Adding a model is its network class, its schema and its YAML: here all three from outside the package
(the class and schema in this module, the YAML in tests/added_model/model/), found through Hydra's search
path, and trained a few batches by mnist-train."""

from dataclasses import dataclass

import pytest
from hydra.core.config_store import ConfigStore
from torch import nn

from mnist_cnn.config.keys import key, section
from mnist_cnn.config.model import KERAS_ADADELTA, ModelConfig, OptimizerConfig

from runs import FEW_BATCHES, ROOT, metrics_of, train_here


class TinyNet(nn.Sequential):
    """One convolution and a dense layer, sized from the dataset's images and classes."""

    def __init__(self, *, channels: int, input_shape: tuple[int, int, int], num_classes: int):
        c, h, w = input_shape
        super().__init__(nn.Conv2d(c, channels, 3), nn.ReLU(), nn.Flatten(), nn.Linear(channels * (h - 2) * (w - 2), num_classes))


@dataclass
class TinyConfig(ModelConfig):
    """test_added_model.TinyNet"""
    _target_: str = key("the network class", "test_added_model.TinyNet")
    channels: int = key("filters of the convolution", 4, ge=1)
    optimizer: OptimizerConfig = section(OptimizerConfig, "Adadelta with Keras 2.3's defaults", **KERAS_ADADELTA)


@pytest.fixture
def tiny_schema():
    """TinyConfig in Hydra's ConfigStore for this test only: a multirun later in the same worker pickles the
    store for its jobs, which could not import this module."""
    ConfigStore.instance().store(group="schema/model", name="tiny", node=TinyConfig)
    yield
    del ConfigStore.instance().repo["schema"]["model"]["tiny.yaml"]


@pytest.mark.slow  # trains
def test_a_model_added_from_a_config_folder_trains(tmp_path, mnist_dir, tiny_schema):
    result = train_here("model=tiny", f"hydra.searchpath=[file://{ROOT / 'tests' / 'added_model'}]", *FEW_BATCHES,
                        "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["status"] == "ok" and metrics["model"] == "TinyNet"
    assert metrics["parameters"] == 4 * 9 + 4 + 4 * 26 * 26 * 10 + 10
    assert metrics["test_acc"] is not None and (tmp_path / "confusion_matrix.png").exists()
