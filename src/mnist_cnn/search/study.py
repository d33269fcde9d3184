"""Where a search's study lives and how it is opened: by default a SQLite file in the search's folder,
outputs/search/<study>/optuna.db, which any number of workers open at once; `hydra.sweeper.storage=` takes
any Optuna storage URL (PostgreSQL, MySQL, another SQLite file) or a journal file (a path ending .log). On a
database each running trial beats a heartbeat, so that a worker killed mid-trial (kill -9, a lost node)
costs only that trial: another worker marks it failed once the heartbeat has stopped for GRACE seconds."""

from __future__ import annotations

import contextlib
from pathlib import Path

import optuna
from filelock import FileLock

HEARTBEAT, GRACE = 5, 30  # seconds


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    return storage or f"sqlite:///{Path(sweep_dir).absolute() / 'optuna.db'}"


def storage_of(url: str):
    """An Optuna storage: a journal file for a path ending .log, else a database with heartbeats."""
    if url.endswith(".log") and "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)


def open_study(name: str, url: str, direction: str = "maximize", sampler=None, pruner=None) -> optuna.Study:
    database = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    # workers started together would create a SQLite file's tables at once, and one would fail: one at a time
    with FileLock(f"{database}.lock") if database is not None else contextlib.nullcontext():
        return optuna.create_study(
            study_name=name,
            storage=storage_of(url),
            direction=direction,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
