"""MLflow beside TensorBoard (`logger=mlflow`): every run in one tracking store, a multirun as a parent run
with a child per job, never at the cost of a result.

- The store: `logger.mlflow.tracking_uri`; by default MLFLOW_TRACKING_URI (MLflow's own convention), else a
  SQLite file, outputs/mlflow.db, with no server. A new SQLite store is created under a lock on its file,
  so that jobs starting together do not race through MLflow's schema migration; MLflow gives each SQLite
  session a busy timeout (20 s) for the writes that follow. A SQLite store's artifacts go beside it
  (outputs/mlartifacts).
- The run's folder holds mlflow.json (the store, the run id): a resume (and a requeued SLURM job) continues
  that MLflow run, and a failure or a signal is recorded on it. A sweep's folder holds the parent's.
- A store that cannot be reached, at the start or in the middle, is said in one line and tracking stops
  there; the run goes on, and its folder holds everything. MLflow's own client retries an unreachable
  server for minutes; HTTP_DEFAULTS give up in seconds unless the environment says otherwise.

Lightning's MLFlowLogger does the logging; RunMLFlowLogger adds the run's name, params, tags, files and
model, and the guard. Lightning's automatic call with the model's hyperparameters is left out: a run's
params are the settings that tell runs apart (mnist_cnn.artifacts.distinguishing), as in TensorBoard.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from mnist_cnn.atomic import write_atomically
from mnist_cnn.logger import run_name as described_name

log = logging.getLogger(__name__)
RECORD = "mlflow.json"
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
STATUS = {"ok": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
# What a run's folder holds that MLflow keeps as the run's artifacts
ARTIFACTS = ("*.png", "*.txt", "*.csv", "classification_report.json", "metrics.json", "*.log")


def tracker_errors() -> tuple[type[BaseException], ...]:
    """What a store that cannot be reached, or fails, raises: MLflow's errors, the network's (OSError),
    the database's."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError
    return MlflowException, OSError, SQLAlchemyError


def store_uri(uri: str) -> str:
    """A SQLite store's path made absolute (the run may be resumed from another folder); others as given."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    return uri


def shown(uri: str) -> str:
    """The URI without a password, for files and messages."""
    parts = urlsplit(uri)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return uri


def sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):].split("?")[0]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def store_lock(uri: str):
    """For a SQLite store: its file locked (flock; SQLite's own locks are fcntl ranges, apart from it), so
    that one process at a time creates the tables or the experiment."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def client_for(uri: str):
    """An MlflowClient of the store, which MLflow creates on first use (under store_lock)."""
    from mlflow.tracking import MlflowClient
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (creating tables) are not the user's
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    with store_lock(uri):
        return MlflowClient(uri)


def experiment_id(client, uri: str, name: str) -> str:
    with store_lock(uri):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        db = sqlite_file(uri)
        location = (db.parent / "mlartifacts").absolute().as_uri() if db is not None else None
        return client.create_experiment(name, artifact_location=location)


def read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("run_id") else None


def write_record(folder: Path, uri: str, experiment: str, run_id: str, **more) -> None:
    write_atomically(folder / RECORD, json.dumps({"tracking_uri": shown(uri), "experiment_id": experiment,
                                                  "run_id": run_id, **more}, indent=2) + "\n")


def said_lost(uri: str, what: str, exc: BaseException, folder: Path) -> None:
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    log.warning("mnist-train: MLflow at %s failed while %s (%s): not tracked from here on; %s holds the whole run",
                shown(uri), what, reason, folder)


class RunMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger for one run of mnist-train: named as in TensorBoard, continued by a resume,
    a child of its sweep's run, and guarded (a failing store stops tracking, never the run)."""

    def __init__(self, tracking_uri: str, experiment_name: str, save_dir: str, run_name: str | None = None):
        self.folder, self.lost = Path(save_dir), False
        uri = store_uri(tracking_uri)
        parent = sweep_record()
        # a sweep's job is named by what the sweep varies; what all its jobs share is on the parent run
        run_name = run_name or described_name(set(parent["swept"]) if parent and parent.get("swept") else None)
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
        tags = {"status": "running", "run_dir": str(self.folder.absolute()), "mlflow.source.name": "mnist-train",
                "mlflow.note.content": f"Run folder: {self.folder.absolute()}"}  # the run's description in the UI
        parent = sweep_record()
        if parent is not None:
            tags["mlflow.parentRunId"] = parent["run_id"]
        run = client.create_run(self._experiment_id, run_name=self._run_name, tags=tags)
        self._run_id = run.info.run_id
        write_record(self.folder, self._tracking_uri, self._experiment_id, self._run_id)

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
        named = {("lr" if k.startswith("lr-") else "train_loss" if k == "train_loss_epoch" else k): v
                 for k, v in metrics.items() if k != "epoch"}  # Lightning adds the epoch to every call
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
            final = {k: metrics[k] for k in ("best_val_acc", "best_val_loss", "test_acc", "test_loss", "fit_seconds")
                     if metrics.get(k) is not None}
            super(RunMLFlowLogger, self).log_metrics(final, step)
            for pattern in ARTIFACTS:
                for path in sorted(self.folder.glob(pattern)):
                    client.log_artifact(run_id, str(path))
            if checkpoint:
                log_network(client, run_id, checkpoint)
            client.set_tag(run_id, "status", "ok")
            client.set_terminated(run_id, STATUS["ok"])
        if self._active():
            self._guarded("recording the run's results", write)


def log_network(client, run_id: str, checkpoint: str) -> None:
    """The checkpoint's network as an MLflow model ("model": `mlflow.pytorch.load_model("runs:/<id>/model")`),
    with its input signature: normalised (N, 1, 28, 28) float32 images in, (N, classes) logits out."""
    import importlib.metadata

    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from mnist_cnn.checkpoints import load_model
    model, _ = load_model(checkpoint)
    example = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        signature = infer_signature(example.numpy(), model(example).numpy())
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mnist-cnn=={importlib.metadata.version('mnist-cnn')}"]
    # pickle, not MLflow's default pt2: a pt2 graph is traced at the example's batch size. MLflow warns that
    # a pickle runs code when loaded; this one is the user's own run's, and load_model is theirs to call.
    quiet = logging.getLogger("mlflow.pytorch")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.pytorch.save_model(model, f"{tmp}/model", signature=signature, pip_requirements=requirements,
                                      serialization_format="pickle")
            client.log_artifacts(run_id, f"{tmp}/model", "model")
    finally:
        quiet.level = level


def sweep_record() -> dict | None:
    """The parent run of a multirun job: mlflow.json in the sweep's folder, the job's folder less its subdir
    (hydra.sweep.dir itself is not resolved again here: mnist_cnn.run_folder)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra = HydraConfig.get()
    job, subdir = Path(hydra.runtime.output_dir), Path(str(hydra.sweep.subdir))
    return read_record(job.parents[len(subdir.parts) - 1]) if subdir.parts else None


def mark(folder: Path, status: str, reason: str | None = None) -> None:
    """A run that did not finish (failed, interrupted), marked so in MLflow as in its metrics.json."""
    record = read_record(folder)
    if record is None:
        return
    uri = record["tracking_uri"]
    given = os.environ.get("MLFLOW_TRACKING_URI", "")
    if shown(given) == uri:  # the record holds no password: the environment may
        uri = given
    try:
        client = client_for(uri)
        client.set_tag(record["run_id"], "status", status)
        if reason:
            client.set_tag(record["run_id"], "reason", reason[:5000])
        client.set_terminated(record["run_id"], STATUS[status])
    except tracker_errors() as exc:
        said_lost(uri, f"marking the run {status}", exc, folder)


def start_sweep(sweep_dir: Path, tracking_uri: str, experiment_name: str, overrides: list[str],
                search_space: list[str]) -> None:
    """A multirun's parent run, made before its jobs start (and with it the store, once): tagged with the
    overrides every job shares; the keys it varies (`overrides` with several values, and an optimising
    sweeper's `search_space`) name its children."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = [o.key_or_group for o in parsed if o.is_sweep_override()] + search_space
    fixed = " ".join(o.input_line for o in parsed if not o.is_sweep_override() and not o.key_or_group.startswith("hydra."))
    uri = store_uri(tracking_uri)
    sweep_dir.mkdir(parents=True, exist_ok=True)  # Hydra makes it when the first job starts
    try:
        client = client_for(uri)
        experiment = experiment_id(client, uri, experiment_name)
        run = client.create_run(experiment, run_name=f"sweep {sweep_dir.name}", tags={
            "status": "running", "run_dir": str(sweep_dir.absolute()), "mlflow.source.name": "mnist-train -m",
            "every job's overrides": fixed or "(none)", "swept": " ".join(swept)})
        write_record(sweep_dir, uri, experiment, run.info.run_id, swept=swept)
    except tracker_errors() as exc:
        said_lost(uri, "starting the sweep's run", exc, sweep_dir)


def finish_sweep(sweep_dir: Path, ok: bool) -> None:
    """The sweep report (summary.md, summary.csv, plots) on the parent run, which ends."""
    record = read_record(sweep_dir)
    if record is None:
        return
    uri = record["tracking_uri"]
    try:
        client = client_for(uri)
        for path in sorted([*sweep_dir.glob("summary.*"), *sweep_dir.glob("sweep_*.png")]):
            client.log_artifact(record["run_id"], str(path))
        client.set_tag(record["run_id"], "status", "ok" if ok else "failed")
        client.set_terminated(record["run_id"], STATUS["ok" if ok else "failed"])
    except tracker_errors() as exc:
        said_lost(uri, "recording the sweep's report", exc, sweep_dir)
