"""The run's loggers: TensorBoard set up for comparing runs (`tensorboard --logdir outputs`), and a CSV
logger that keeps a resumed run's earlier rows.

Lightning's TensorBoardLogger, with three changes:
- each run is named by its folder and what distinguishes it, `<experiment or model>/<override>/...`
  (e.g. `runs/2026-12-07_10-00-00/lab_baseline/data.batch_size=64/seed=1`);
- tags grouped by what they measure (`accuracy/train`, `accuracy/val`, `loss/...`), with a Custom
  Scalars layout that draws train and validation on one chart, as Keras's TensorBoard callback does;
- one event file per run: Lightning closes its writer after fit and after test, and the next write
  opens another file; here the run closes it once, after its last figure (mnist_cnn.reports.run_files).
"""

from __future__ import annotations

import csv
import struct
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary

TAGS = {
    "train_loss_step": "loss/train_step",
    "train_loss_epoch": "loss/train",
    "val_loss": "loss/val",
    "test_loss": "loss/test",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "test_acc": "accuracy/test",
}
# Custom Scalars takes regular expressions: anchored, so that loss/train does not also draw loss/train_step
LAYOUT = {
    "train and validation": {
        "accuracy": ["Multiline", ["^accuracy/train$", "^accuracy/val$"]],
        "loss": ["Multiline", ["^loss/train$", "^loss/val$"]],
    }
}
# Overrides that do not change what a run computes, or that only locate it, stay out of its name.
UNNAMED = (
    "experiment=",
    "hydra.",
    "resume=",
    "data.data_dir=",
    "callbacks.progress_bar.",
    "logger",
    "name=",
    "explain=",
    "figures=",
)


def described(only: set[str] | None = None) -> str:
    """`<experiment or model>/<override>/...`: what the run's Hydra overrides change; "run" outside a Hydra
    app. `only`: the keys whose overrides to name (a sweep's)."""
    if not HydraConfig.initialized():
        return "run"
    hydra = HydraConfig.get()
    overrides = [
        o.lstrip("+~").replace("/", "_")
        for o in hydra.overrides.task
        if not o.lstrip("+~").startswith(UNNAMED) and (only is None or o.lstrip("+~").partition("=")[0] in only)
    ]
    choices = hydra.runtime.choices
    return "/".join([choices.get("experiment") or choices.get("model") or "run", *overrides])


def run_name(only: set[str] | None = None) -> str:
    """The run's name in MLflow, never another's: a run given name= is called by its folder's name (the
    name, or name-2, ... where it was taken); another by what it changes and its folder
    (`baseline/seed=1 (2026-12-07_10-00-00)`), so that runs apart only by their date are told apart; a
    multirun's job by what it changes of what its sweep varies (`only`), under the sweep's parent run."""
    if not HydraConfig.initialized():
        return "run"
    hydra = HydraConfig.get()
    if hydra.mode == RunMode.MULTIRUN:
        return described(only)
    folder = Path(hydra.runtime.output_dir).name
    return folder if any(o.startswith("name=") for o in hydra.overrides.task) else f"{described()} ({folder})"


class RunTensorBoardLogger(TensorBoardLogger):
    """Writes into the run's folder (name ''), under what the run changes (version null: `described`), so
    that `tensorboard --logdir outputs` calls it `runs/<folder>/<experiment or model>/<override>...`: the
    folder tells runs apart, the rest what they changed. A resumed run keeps the place it started with
    (before this layout: `tensorboard/<...>`)."""

    def __init__(self, save_dir: str, name: str = "", version: str | None = None, **kwargs):
        if version is None:
            existing = sorted(p.parent for p in Path(save_dir, name).rglob("events.out.tfevents.*"))
            version = str(existing[0].relative_to(Path(save_dir, name))) if existing else described()
        super().__init__(save_dir, name=name, version=version, default_hp_metric=False, **kwargs)

    @property
    def experiment(self):
        new = self._experiment is None
        writer = super().experiment
        if new and writer is not None:
            writer.add_custom_scalars(LAYOUT)
        return writer

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        renamed = {("lr" if k.startswith("lr-") else TAGS.get(k, k)): v for k, v in metrics.items() if k != "epoch"}
        super().log_metrics(renamed, step)

    @rank_zero_only
    @rank_zero_only
    def log_png(self, tag: str, png: bytes, step: int) -> None:
        """A PNG file as TensorBoard's image, its bytes as they are: add_image would decode it to pixels and
        encode them again, which took a run's figures stage longer than drawing some of them."""
        width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk, which a PNG starts with
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        self.experiment.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def finalize(self, status: str) -> None:
        self.save()  # flushed, not closed: the run's test and figures go into the same file


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a run adds to the metrics.csv it finds in its folder (a resumed
    run's). Lightning's writer deletes that file when it starts, and with it the rows of every epoch
    before the resume; it also warns of the deletion whenever the folder holds anything at all."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        rows = Path(self.log_dir, ExperimentWriter.NAME_METRICS_FILE)
        kept = rows.with_name(rows.name + ".kept")
        if rows.is_file():
            rows.replace(kept)  # out of the writer's reach while it starts; a crash here leaves it beside
        try:
            with warnings.catch_warnings():  # nothing it could delete is left in its reach
                warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
                writer = super().experiment
        finally:
            if kept.is_file():
                kept.replace(rows)
        if rows.is_file():
            with rows.open(newline="") as f:  # its columns: the writer rewrites the header when new ones come
                writer.metrics_keys = list(csv.DictReader(f).fieldnames or [])
        return writer
