"""The MLflow store of `logger=mlflow` (mnist_cnn.tracking.mlflow_run): opened once, records in run folders, runs and
sweeps marked, and a store that fails said in one line, never a run lost to it.

- The store: `logger.mlflow.tracking_uri`; by default MLFLOW_TRACKING_URI (MLflow's own convention), else a
  SQLite file, outputs/mlflow.db, with no server. A new SQLite store is created under a lock on its file,
  so that jobs starting together do not race through MLflow's schema migration; MLflow gives each SQLite
  session a busy timeout (20 s) for the writes that follow. A SQLite store's artifacts go beside it
  (outputs/mlartifacts).
- A run's folder holds mlflow.json (the store, the run id): a resume (and a requeued SLURM job) continues
  that MLflow run, and a failure or a signal is recorded on it (`mark`). A sweep's folder holds its parent
  run's (`start_sweep`, `finish_sweep`).
- MLflow's own client retries an unreachable server for minutes; HTTP_DEFAULTS give up in seconds unless
  the environment says otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from mnist_cnn.atomic import write_atomically

log = logging.getLogger(__name__)
RECORD = "mlflow.json"
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
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
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    return uri


def shown(uri: str) -> str:
    """The URI without a password, for files and messages."""
    parts = urlsplit(uri)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return uri


def sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :].split("?")[0]) if uri.startswith("sqlite:///") else None


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
    write_atomically(
        folder / RECORD,
        json.dumps({"tracking_uri": shown(uri), "experiment_id": experiment, "run_id": run_id, **more}, indent=2)
        + "\n",
    )


def said_lost(uri: str, what: str, exc: BaseException, folder: Path) -> None:
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    log.warning(
        "mnist-train: MLflow at %s failed while %s (%s): not tracked from here on; %s holds the whole run",
        shown(uri),
        what,
        reason,
        folder,
    )


def recorded_uri(record: dict) -> str:
    """The store a record names; the record holds no password, the environment's MLFLOW_TRACKING_URI may."""
    given = os.environ.get("MLFLOW_TRACKING_URI", "")
    return given if shown(given) == record["tracking_uri"] else record["tracking_uri"]


def end(client, run_id: str, status: str) -> None:
    """An MLflow run ended with the run's own status (ok, failed, interrupted), as its metrics.json says."""
    client.set_tag(run_id, "status", status)
    client.set_terminated(run_id, STATUS[status])


def mark(folder: Path, status: str, reason: str | None = None) -> None:
    """A run that did not finish (failed, interrupted), marked so in MLflow as in its metrics.json."""
    record = read_record(folder)
    if record is None:
        return
    uri = recorded_uri(record)
    try:
        client = client_for(uri)
        if reason:
            client.set_tag(record["run_id"], "reason", reason[:5000])
        end(client, record["run_id"], status)
    except tracker_errors() as exc:
        said_lost(uri, f"marking the run {status}", exc, folder)


def start_sweep(
    sweep_dir: Path, tracking_uri: str, experiment_name: str, overrides: list[str], search_space: list[str]
) -> None:
    """A multirun's parent run, made before its jobs start (and with it the store, once): tagged with the
    overrides every job shares; the keys it varies (`overrides` with several values, and an optimising
    sweeper's `search_space`) name its children."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = [o.key_or_group for o in parsed if o.is_sweep_override()] + search_space
    fixed = " ".join(
        o.input_line for o in parsed if not o.is_sweep_override() and not o.key_or_group.startswith("hydra.")
    )
    uri = store_uri(tracking_uri)
    sweep_dir.mkdir(parents=True, exist_ok=True)  # Hydra makes it when the first job starts
    try:
        client = client_for(uri)
        experiment = experiment_id(client, uri, experiment_name)
        run = client.create_run(
            experiment,
            run_name=f"sweep {sweep_dir.name}",
            tags={
                "status": "running",
                "run_dir": str(sweep_dir.absolute()),
                "mlflow.source.name": "mnist-train -m",
                "every job's overrides": fixed or "(none)",
                "swept": " ".join(swept),
            },
        )
        write_record(sweep_dir, uri, experiment, run.info.run_id, swept=swept)
    except tracker_errors() as exc:
        said_lost(uri, "starting the sweep's run", exc, sweep_dir)


def finish_sweep(sweep_dir: Path, ok: bool) -> None:
    """The sweep's report (summary.md, summary.csv, plots) or the search's (search.md, trials.csv, plots) on the
    parent run, which ends."""
    record = read_record(sweep_dir)
    if record is None:
        return
    uri = recorded_uri(record)
    try:
        client = client_for(uri)
        reports = ("summary.*", "sweep_*.png", "search.md", "trials.csv", "*.png")  # a sweep's or a search's
        for path in sorted({p for pattern in reports for p in sweep_dir.glob(pattern)}):
            client.log_artifact(record["run_id"], str(path))
        end(client, record["run_id"], "ok" if ok else "failed")
    except tracker_errors() as exc:
        said_lost(uri, "recording the sweep's report", exc, sweep_dir)
