"""The config schema: every key's type, range and meaning, in one place.

Each dataclass mirrors the class its config group instantiates and is stored in Hydra's ConfigStore
under `schema/<group>/<option>`; the YAML files in conf/ name it first in their defaults list, so
Hydra itself refuses a value of the wrong type or a key that does not exist. The ranges and closed
sets kept in each field's metadata (mnist_cnn.config.keys) are checked by mnist_cnn.config.checks after
composition, before any work. The data module's and the speed plug-in's schemas are their constructors'
(mnist_cnn.config.signature); the model node's: mnist_cnn.config.model, its network's its constructor's,
read once the config is composed (mnist_cnn.config.checks.typed).
"""

from __future__ import annotations

from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

from mnist_cnn.config.keys import (
    ACCELERATORS,
    FOLDER_NAME,
    LIMIT,
    RUN_DIR,
    SEED_MAX,
    device_count,
    key,
    precisions,
    section,
    strategies,
)
from mnist_cnn.config.model import ModelConfig
from mnist_cnn.config.signature import schema_of
from mnist_cnn.data.module import MNISTDataModule
from mnist_cnn.training.averaging import WeightEMA
from mnist_cnn.training.speed import FastStep


@dataclass
class TrainerConfig:
    """lightning.pytorch.Trainer (the arguments this project sets)"""

    _target_: str = key("the trainer class", "lightning.pytorch.Trainer")
    default_root_dir: str = key("where Lightning writes when no logger says otherwise", RUN_DIR)
    accelerator: str = key("what runs the maths", "auto", choices=ACCELERATORS)
    strategy: str = key("how several devices share the work", "auto", choices=strategies)
    devices: Any = key("how many devices", 1, allowed="an integer >= 1, -1 (all) or auto", test=device_count)
    num_nodes: int = key("machines", 1, ge=1)
    max_epochs: int = key("epochs to train (Keras's epochs)", 3, ge=1)
    precision: str = key(
        "number format of the maths; auto: bf16-mixed where the device computes bf16 natively, "
        "else 32-true (mnist_cnn.config.checks.native_precision)",
        "auto",
        choices=precisions,
    )
    log_every_n_steps: int = key("training steps between logged values", 20, ge=1)
    deterministic: bool = key("deterministic algorithms: same config and seed, same metrics, bit for bit", True)
    benchmark: Optional[bool] = key("cudnn.benchmark; null: off while deterministic", None)
    limit_train_batches: Any = key("training batches per epoch", None, **LIMIT)
    limit_val_batches: Any = key("validation batches per epoch", None, **LIMIT)
    limit_test_batches: Any = key("test batches", None, **LIMIT)
    num_sanity_val_steps: int = key("validation batches run before training", 2, ge=-1)
    fast_dev_run: Any = key(
        "one batch of each stage (true), a smoke test in seconds, or n batches",
        False,
        allowed="true, false or an integer >= 0",
        test=lambda v: isinstance(v, bool) or (isinstance(v, int) and v >= 0),
    )
    enable_model_summary: bool = key("Lightning's layer table on the console (model_summary.txt has it anyway)", False)


@dataclass
class CheckpointConfig:
    """mnist_cnn.training.checkpoints.RunCheckpoint (Lightning's ModelCheckpoint)"""

    _target_: str = key("the checkpoint callback class", "mnist_cnn.training.checkpoints.RunCheckpoint")
    every_n_steps: Optional[int] = key(
        "also write last.ckpt every this many training steps (null: epoch ends only)", 100, ge=1
    )
    every_n_seconds: Optional[float] = key(
        "or at the first step this long after the last save; null: 60 s on CUDA, else every_n_steps", None, gt=0
    )
    dirpath: str = key("the checkpoint folder", f"{RUN_DIR}/checkpoints")
    filename: str = key("the best checkpoint's file name pattern", "epoch{epoch:02d}-val_acc{val_acc:.4f}")
    auto_insert_metric_name: bool = key("Lightning's metric-name prefix in file names", False)
    monitor: str = key("the metric that chooses the best checkpoint", "val_acc", choices=("val_acc", "val_loss"))
    mode: str = key("whether the monitored metric is better high or low", "max", choices=("max", "min"))
    save_top_k: int = key("best checkpoints kept (-1: all)", 1, ge=-1)
    save_last: bool = key("also keep last.ckpt", True)


@dataclass
class ProgressBarConfig:
    """mnist_cnn.training.progress.ProgressBar (Lightning's TQDMProgressBar)"""

    _target_: str = key("the progress bar class", "mnist_cnn.training.progress.ProgressBar")
    refresh_rate: int = key("batches between refreshes (0: no bar)", 20, ge=0)


@dataclass
class LearningRateConfig:
    """lightning.pytorch.callbacks.LearningRateMonitor"""

    _target_: str = key("the learning-rate monitor class", "lightning.pytorch.callbacks.LearningRateMonitor")
    logging_interval: Optional[str] = key("when the learning rate is logged", "epoch", choices=("epoch", "step", None))


@dataclass
class TensorBoardConfig:
    """mnist_cnn.tracking.tensorboard.RunTensorBoardLogger (Lightning's TensorBoardLogger)"""

    _target_: str = key("the logger class", "mnist_cnn.tracking.tensorboard.RunTensorBoardLogger")
    save_dir: str = key("the folder the logger writes under", RUN_DIR)
    name: str = key("its subfolder ('': none, the run's folder itself)", "")
    version: Optional[str] = key(
        "the subfolder TensorBoard names the run by, after the run's folder; null: its "
        "experiment and overrides, e.g. lab_baseline/seed=1",
        None,
    )


@dataclass
class CSVConfig:
    """mnist_cnn.tracking.tensorboard.RunCSVLogger (Lightning's CSVLogger, keeping a resumed run's rows)"""

    _target_: str = key("the logger class", "mnist_cnn.tracking.tensorboard.RunCSVLogger")
    save_dir: str = key("the folder the logger writes under", RUN_DIR)
    name: str = key("its subfolder", "csv")
    version: str = key("its version subfolder ('' for none)", "")


@dataclass
class MLflowConfig:
    """mnist_cnn.tracking.mlflow_run.RunMLFlowLogger (Lightning's MLFlowLogger), beside TensorBoard"""

    _target_: str = key("the logger class", "mnist_cnn.tracking.mlflow_run.RunMLFlowLogger")
    tracking_uri: str = key(
        "the tracking store: a server (http://host:5000) or a database (sqlite:///path.db); "
        "by default MLFLOW_TRACKING_URI, else outputs/mlflow.db",
        "${oc.env:MLFLOW_TRACKING_URI,'sqlite:///outputs/mlflow.db'}",
    )
    experiment_name: str = key("the MLflow experiment the runs go into", "mnist-cnn")
    save_dir: str = key("the run's folder, whose mlflow.json names its MLflow run", RUN_DIR)
    run_name: Optional[str] = key(
        "the run's name in MLflow; null: name=, else what the run changes and its "
        "folder, e.g. baseline/seed=1 (2026-12-07_10-00-00)",
        None,
    )


@dataclass
class TrainConfig:
    """mnist-train: one option from each group, and the run's own keys."""

    seed: int = key("seeds the split, the initialisation and the batch order", 42, ge=0, le=SEED_MAX)
    name: Optional[str] = key(
        "the run's name: its folder (outputs/runs/<name>, or -2, -3, ... where taken), its "
        "TensorBoard and MLflow run; null: named by the time it started and its overrides",
        None,
        allowed="a folder name: letters, digits, '.', '_', '-', '=', ',', '+'",
        test=lambda v: v is None or (isinstance(v, str) and FOLDER_NAME.fullmatch(v) is not None),
        refused="runs/a",
    )
    test: bool = key("test the best checkpoint once, after fitting", True)
    figures: bool = key(
        "draw the run's figures: samples.png, learning_curves.png, confusion_matrix.png, misclassified.png "
        "(metrics.json and the test's report files are written either way); false spares each job of a "
        "large sweep the time",
        True,
    )
    explain: bool = key(
        "also write what the tested network learned: filters.png, feature_maps.png, attributions.png "
        "and the Projector's embedding",
        True,
    )
    resume: Optional[str] = key(
        "a run directory to continue from its newest checkpoint, with the overrides it was "
        "started with (mnist_cnn.runs.resume: only what does not change the run's results may "
        "differ)",
        None,
    )
    read_epochs: Optional[List[int]] = key(
        "also report what a run stopped after each of these epochs would have "
        "(an epochs grid from one run; each 1..trainer.max_epochs; exact, see "
        "mnist_cnn.training.epoch_readings)",
        None,
        ge=1,
    )
    data: Any = None
    model: ModelConfig = section(ModelConfig, "the network and how it is trained (model=<option>)")
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None


SCHEMAS = {
    "schema/train": TrainConfig,
    "schema/data/mnist": schema_of(MNISTDataModule),
    "schema/trainer/default": TrainerConfig,
    "schema/callbacks/speed": schema_of(FastStep),
    "schema/callbacks/ema": schema_of(WeightEMA),
    "schema/callbacks/checkpoint": CheckpointConfig,
    "schema/callbacks/progress_bar": ProgressBarConfig,
    "schema/callbacks/learning_rate": LearningRateConfig,
    "schema/logger/tensorboard": TensorBoardConfig,
    "schema/logger/csv": CSVConfig,
    "schema/logger/mlflow": MLflowConfig,
}
for path, node in SCHEMAS.items():
    group, _, name = path.rpartition("/")
    ConfigStore.instance().store(group=group, name=name, node=node)


GROUPS = ("data", "model", "trainer", "logger", "callbacks")  # TrainConfig's nodes, each from its config group


def declared_keys() -> list[str]:
    """Every key mnist-train's schema declares, dotted (model.* for every model together)."""
    keys = set()

    def walk(schema, prefix: str) -> None:
        for f in fields(schema):
            default = f.default_factory() if f.default_factory is not NO_DEFAULT else None
            if is_dataclass(default):
                walk(type(default), f"{prefix}{f.name}.")
                continue
            if not (prefix == "" and f.name in GROUPS):
                keys.add(prefix + f.name)

    for path, schema in SCHEMAS.items():
        group, *option = path.split("/")[1:]
        prefix = (
            "" if group == "train" else f"{group}.{option[0]}." if group in ("callbacks", "logger") else f"{group}."
        )
        walk(schema, prefix)
    return sorted(keys)
