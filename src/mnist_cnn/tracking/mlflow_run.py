"""MLflow beside TensorBoard (`logger=mlflow`): every run in one tracking store (mnist_cnn.tracking.store),
a multirun as a parent run with a child per job, never at the cost of a result.

Lightning's MLFlowLogger does the logging; RunMLFlowLogger adds the run's name, params, tags, files and
model, and the guard: a store that cannot be reached, at the start or in the middle, is said in one line
and tracking stops there; the run goes on, and its folder holds everything. Lightning's automatic call with
the model's hyperparameters is left out: a run's params are the settings that tell runs apart
(mnist_cnn.reports.run_files.distinguishing), as in TensorBoard.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from mnist_cnn.tracking.store import (
    ARTIFACTS,
    client_for,
    end,
    experiment_id,
    read_record,
    said_lost,
    shown,
    store_uri,
    tracker_errors,
    write_record,
)
from mnist_cnn.tracking.tensorboard import run_name as unique_name


class RunMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger for one run of mnist-train: named apart (logger.run_name), continued by a resume,
    a child of its sweep's run, and guarded (a failing store stops tracking, never the run)."""

    def __init__(self, tracking_uri: str, experiment_name: str, save_dir: str, run_name: str | None = None):
        self.folder, self.lost, self.parent = Path(save_dir), False, sweep_record()
        uri = store_uri(tracking_uri)
        # a sweep's job is named by what the sweep varies; what all its jobs share is on the parent run
        swept = (self.parent or {}).get("swept")
        run_name = run_name or unique_name(set(swept) if swept else None)
        try:
            client_for(uri)  # the store made once, under its lock, before Lightning's constructor opens it
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri, log_model=False)
        except tracker_errors() as exc:
            said_lost(uri, "opening the store", exc, self.folder)
            Logger.__init__(self)
            self._tracking_uri, self._experiment_name, self._run_id = uri, experiment_name, None
            self._mlflow_client, self._initialized, self.lost = None, True, True

    def _guarded(self, what: str, call) -> None:
        if self.lost:
            return
        try:
            call()
        except tracker_errors() as exc:
            self.lost = True
            said_lost(self._tracking_uri, what, exc, self.folder)

    @property
    def experiment(self):
        if not self._initialized:
            self._initialized = True
            self._guarded("starting the run", self._start)
        return self._mlflow_client

    def _active(self) -> bool:
        """Whether the MLflow run is there to write to (started now if need be)."""
        _ = self.experiment
        return not self.lost and self._run_id is not None

    def _start(self) -> None:
        client = self._mlflow_client
        self._experiment_id = experiment_id(client, self._tracking_uri, self._experiment_name)
        previous = read_record(self.folder)
        if previous is not None and previous["tracking_uri"] == shown(self._tracking_uri):
            self._run_id = previous["run_id"]  # a resumed run (or a requeued job) continues its MLflow run
            client.update_run(self._run_id, status="RUNNING")
            client.set_tag(self._run_id, "status", "running")
            return
        tags = {
            "status": "running",
            "run_dir": str(self.folder.absolute()),
            "mlflow.source.name": "mnist-train",
            "mlflow.note.content": f"Run folder: {self.folder.absolute()}",
        }  # the run's description in the UI
        if self.parent is not None:
            tags["mlflow.parentRunId"] = self.parent["run_id"]
        run = client.create_run(self._experiment_id, run_name=self._run_name, tags=tags)
        self._run_id = run.info.run_id
        write_record(self.folder, self._tracking_uri, self._experiment_id, self._run_id)

    def where(self) -> str | None:
        """The console's line for a run tracked to its end; None when tracking stopped (said already)."""
        if self.lost or self._run_id is None:
            return None
        return f"MLflow run {self._run_id} in {shown(self._tracking_uri)}"

    @property
    def name(self) -> str:
        return self._experiment_name  # Lightning's asks the store

    @property
    def version(self) -> str | None:
        return self._run_id

    @property
    def save_dir(self) -> str:
        return str(self.folder)  # Lightning's is None for a store that is not a folder (Lightning issue 19441)

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        """Lightning's call with the model's and data module's hyperparameters: left out (see `describe`)."""

    @rank_zero_only
    def describe(self, params: dict, config_yaml: str, commit: str | None) -> None:
        """The run's params (the settings that tell runs apart), its resolved config and its git commit."""

        def write():
            super(RunMLFlowLogger, self).log_hyperparams(params)
            if commit:
                self._mlflow_client.set_tag(self._run_id, "mlflow.source.git.commit", commit)
            self._mlflow_client.log_text(self._run_id, config_yaml, "config.yaml")

        if self._active():
            self._guarded("recording the run's settings", write)

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        """Lightning's names, shortened as the console says them: train_loss (the epoch's), lr."""
        named = {
            ("lr" if k.startswith("lr-") else "train_loss" if k == "train_loss_epoch" else k): v
            for k, v in metrics.items()
            if k != "epoch"
        }  # Lightning adds the epoch to every call
        if self._active():
            self._guarded("logging metrics", lambda: super(RunMLFlowLogger, self).log_metrics(named, step))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Lightning calls this after fit and again after test: the run ends in `finish`, or `mark`."""

    @rank_zero_only
    def finish(self, metrics: dict, checkpoint: str | None, step: int) -> None:
        """A finished run: its final figures, its folder's files, the tested checkpoint as an MLflow model."""

        def write():
            client, run_id = self._mlflow_client, self._run_id
            final = {
                k: metrics[k]
                for k in ("best_val_acc", "best_val_loss", "test_acc", "test_loss", "fit_seconds")
                if metrics.get(k) is not None
            }
            super(RunMLFlowLogger, self).log_metrics(final, step)
            for pattern in ARTIFACTS:
                for path in sorted(self.folder.glob(pattern)):
                    client.log_artifact(run_id, str(path))
            if checkpoint:
                log_network(client, run_id, checkpoint)
            end(client, run_id, "ok")

        if self._active():
            self._guarded("recording the run's results", write)


def log_network(client, run_id: str, checkpoint: str) -> None:
    """The checkpoint's network as an MLflow model ("model": `mlflow.pytorch.load_model("runs:/<id>/model")`),
    with its input signature: normalised (N, channels, height, width) float32 images in, (N, classes) logits out."""
    import importlib.metadata

    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from mnist_cnn.data.datasets import DATASETS
    from mnist_cnn.inference.loader import load_network

    model, data = load_network(checkpoint)
    example = torch.zeros(1, *DATASETS[data["dataset"]].shape)
    with torch.no_grad():
        signature = infer_signature(example.numpy(), model(example).numpy())
    requirements = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mnist-cnn=={importlib.metadata.version('mnist-cnn')}",
    ]
    # pickle, not MLflow's default pt2: a pt2 graph is traced at the example's batch size. MLflow warns that
    # a pickle runs code when loaded; this one is the user's own run's, and load_model is theirs to call.
    quiet = logging.getLogger("mlflow.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.pytorch.save_model(
                model, f"{tmp}/model", signature=signature, pip_requirements=requirements, serialization_format="pickle"
            )
            client.log_artifacts(run_id, f"{tmp}/model", "model")
    finally:
        quiet.setLevel(level)


def sweep_record() -> dict | None:
    """The parent run of a multirun job: mlflow.json in the sweep's folder, the job's folder less its subdir
    (hydra.sweep.dir itself is not resolved again here: mnist_cnn.runs.folder)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra = HydraConfig.get()
    job, subdir = Path(hydra.runtime.output_dir), Path(str(hydra.sweep.subdir))
    return read_record(job.parents[len(subdir.parts) - 1]) if subdir.parts else None
