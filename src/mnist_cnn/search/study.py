"""Where a search's study lives and how it is opened: by default a SQLite file in the search's folder,
outputs/search/<study>/optuna.db, which any number of workers open at once; `hydra.sweeper.storage=` takes
any Optuna storage URL (PostgreSQL, MySQL, another SQLite file) or a journal file (a path ending .log). On a
database each running trial beats a heartbeat, so that a worker killed mid-trial (kill -9, a lost node)
costs only that trial: another worker marks it failed once its heartbeat has stopped for the grace period."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import optuna
from filelock import FileLock

# Optuna's own lines (an existing study loaded, experimental flags) and alembic's setup say nothing to a user
optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    return storage or f"sqlite:///{Path(sweep_dir).absolute() / 'optuna.db'}"


def storage_of(url: str, heartbeat_interval: int = 5, grace_period: int = 30):
    """An Optuna storage: a journal file for a path ending .log, else a database with heartbeats."""
    if url.endswith(".log") and "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)


def open_study(
    name: str, url: str, direction: str = "maximize", sampler=None, pruner=None, heartbeat_interval=5, grace_period=30
) -> optuna.Study:
    database = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    # workers started together would create a SQLite file's tables at once, and one would fail: one at a time
    with FileLock(f"{database}.lock") if database is not None else contextlib.nullcontext():
        return optuna.create_study(
            study_name=name,
            storage=storage_of(url, heartbeat_interval, grace_period),
            direction=direction,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
