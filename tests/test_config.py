import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from mnist_cnn import train
from mnist_cnn.data import MNISTDataModule
from mnist_cnn.models import MNISTClassifier

CONF = Path(train.CONF_DIR)
GROUPS = {group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
          for group in ("data", "model", "trainer", "logger", "callbacks", "experiment")}


def composed(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.runtime.output_dir={tmp_path}"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.mark.parametrize("group, option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_config_composes_and_instantiates(tmp_path, group, option):
    cfg = composed(tmp_path, f"{group}={option}")
    train.check_config(cfg)
    assert isinstance(instantiate(cfg.data), MNISTDataModule)
    assert isinstance(instantiate(cfg.model, _convert_="all"), MNISTClassifier)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert isinstance(trainer, L.Trainer)


def test_plain_run_is_the_seeds_first_fit(tmp_path):
    cfg = composed(tmp_path)
    assert cfg.model._target_.endswith("BaselineCNN")
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.validation_split) == (256, 3, 0.3)


def test_seed_elu_is_the_seeds_last_fit(tmp_path):
    cfg = composed(tmp_path, "experiment=seed_elu")
    assert cfg.model._target_.endswith("EluCNN")
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.validation_split) == (200, 10, 0.3)
    assert cfg.model.optimizer == {"name": "SGD", "lr": 0.01, "momentum": 0.9, "nesterov": True, "decay": 1e-6}


@pytest.mark.parametrize("override, expected", [
    ("data.validation_split=1.5", "data.validation_split=1.5 is not allowed: expected a number strictly between 0 and 1"),
    ("data.validation_split=0", "data.validation_split=0 is not allowed"),
    ("data.batch_size=0", "data.batch_size=0 is not allowed: expected an integer >= 1"),
    ("data.batch_size=12.5", "data.batch_size=12.5 is not allowed"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 is not allowed: expected an integer >= 1"),
    ("data.normalize=zscore", "data.normalize='zscore' is not allowed: expected one of standard, unit"),
    ("data.split=head", "data.split='head' is not allowed: expected one of random, tail"),
    ("model.optimizer.name=Adamm", "model.optimizer.name='Adamm' is not allowed"),
    ("model=resnet", "model=resnet is not a known option: expected one of baseline, elu, prose_cnn"),
    ("experiment=seed_vgg", "experiment=seed_vgg is not a known option: expected one of seed_baseline, seed_elu"),
    ("data.batchsize=64", "data.batchsize is not a known key"),
    ("seeed=1", "seeed is not a known key"),
])
def test_bad_values_fail_in_one_line_before_any_download(tmp_path, monkeypatch, capsys, override, expected):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MNIST_CNN_DATA", str(data_dir))
    monkeypatch.setattr(sys, "argv", ["train.py", override, f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as exit_info:
        train.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnist-train: error: ") and "\n" not in err
    assert expected in err
    assert not data_dir.exists()  # nothing was downloaded
