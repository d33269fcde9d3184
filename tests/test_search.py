"""hparams_search=optuna: a stored study whose n_trials is its total, continued by the same command, pruned
trials recorded as such, its report; with real processes, a search stopped by SIGTERM continued by the command it
prints, and two workers started together that bring the study to n_trials though one is killed with kill -9
mid-trial and started again."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import processes
import pytest
from filelock import FileLock
from runs import ROOT, train_here

SMALL = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "callbacks.progress_bar.refresh_rate=0",
    "explain=false",
    "figures=false",
    "logger=csv",
)


def trials(folder) -> list[dict]:
    return list(csv.DictReader((folder / "trials.csv").open()))


@pytest.mark.slow  # trains
def test_a_search_is_stored_and_the_same_command_continues_it_to_n_trials(tmp_path, mnist_dir, monkeypatch):
    here = tmp_path / "cwd"  # where the default folders it claims in passing would be left (outputs/*/<time>)
    here.mkdir()
    monkeypatch.chdir(here)
    never_pruned = ("~hydra.sweeper.pruner", "+hydra.sweeper.pruner={_target_:optuna.pruners.NopPruner}")
    search = ("hparams_search=optuna", *SMALL, *never_pruned, f"hydra.sweep.dir={tmp_path}")
    first = train_here(*search, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert [r["trial"] for r in trials(tmp_path)] == ["0", "1"] and (tmp_path / "optuna.db").is_file()
    again = train_here(*search, "hydra.sweeper.n_trials=3")
    assert again.returncode == 0, again.stderr[-3000:]
    rows = trials(tmp_path)
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and all(r["state"] in ("complete", "pruned") for r in rows)
    assert {"model.optimizer.lr", "data.batch_size", "model.net.dense_dropout"} <= set(rows[0])
    for row in rows:
        record = json.loads((tmp_path / row["trial"] / "metrics.json").read_text())
        assert record["status"] == ("ok" if row["state"] == "complete" else "pruned")
    done = train_here(*search, "hydra.sweeper.n_trials=3")  # the study is complete: nothing more to run
    assert done.returncode == 0 and len(trials(tmp_path)) == 3
    summary = (tmp_path / "search.md").read_text()
    assert "Best by validation accuracy: trial " in summary and "never used to choose" in summary
    for plot in ("optimization_history", "param_importances", "parameters"):  # Optuna's, over 3 complete trials
        assert (tmp_path / f"{plot}.png").stat().st_size > 10_000, plot
    assert not list(here.glob("outputs/*/*"))  # no folder claimed in passing is left behind


@pytest.mark.slow  # trains
def test_a_trial_behind_is_pruned_and_recorded_as_pruned(tmp_path, mnist_dir):
    result = train_here(
        "hparams_search=optuna",
        *SMALL,
        "hydra.sweeper.n_trials=2",
        "~hydra.sweeper.pruner",
        "+hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}",  # any accuracy is behind
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(r["state"], r["epochs"]) for r in trials(tmp_path)] == [("pruned", "1"), ("pruned", "1")]
    record = json.loads((tmp_path / "0" / "metrics.json").read_text())
    assert record["status"] == "pruned" and record["epochs"] == 1 and record["reason"] == "pruned after epoch 1"


@pytest.mark.slow  # a worker process, stopped, and the command it prints
def test_a_search_stopped_with_sigterm_continues_with_the_command_it_prints(tmp_path, mnist_dir):
    command = [sys.executable, "train.py", "hparams_search=optuna", *SMALL, "hydra.sweeper.n_trials=2",
               "trainer.limit_train_batches=25", f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    with processes.started(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as worker:
        deadline = time.monotonic() + processes.COMMAND
        while time.monotonic() < deadline and not (tmp_path / "1" / "checkpoints").is_dir():
            time.sleep(0.2)  # the second trial is training
        os.killpg(worker.pid, signal.SIGTERM)
        _, err = worker.communicate(timeout=processes.COMMAND)
    assert worker.returncode == 128 + signal.SIGTERM, err
    said = err.strip().splitlines()
    assert said[-2].endswith("Resume the search with:") and said[-1].strip().endswith(f"resume={tmp_path}"), err
    record = json.loads((tmp_path / "1" / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["resume_command"] == said[-1].strip()
    again = processes.run([sys.executable, "train.py", f"resume={tmp_path}"], cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    found = states(tmp_path)
    assert found[1] == "FAIL" and sum(s in ("COMPLETE", "PRUNED") for s in found) == 2, found


def states(folder) -> list[str]:
    """The study's trials' states; none while the first worker has made the file but not yet the study. Read
    under the workers' lock (mnist_cnn.search.study): opening a SQLite storage can write its tables, and a
    reader doing so while a worker makes them made that worker fail."""
    try:
        with FileLock(f"{folder / 'optuna.db'}.lock"):
            study = optuna.load_study(study_name="baseline", storage=f"sqlite:///{folder / 'optuna.db'}")
    except KeyError:
        return []
    return [t.state.name for t in study.trials]


@pytest.mark.slow  # two worker processes, one killed and started again
def test_two_workers_bring_the_study_to_n_trials_even_when_one_is_killed_mid_trial_and_restarted(tmp_path, mnist_dir):
    command = [sys.executable, "train.py", "hparams_search=optuna", *SMALL, "hydra.sweeper.n_trials=6",
               "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3", "trainer.max_epochs=1",
               "trainer.limit_train_batches=10", f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    with contextlib.ExitStack() as stack:
        first, second = (
            stack.enter_context(processes.started(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            for _ in range(2)
        )
        deadline = time.monotonic() + processes.COMMAND
        while time.monotonic() < deadline and not (
            (tmp_path / "optuna.db").exists() and (found := states(tmp_path)).count("RUNNING") == 2
            and {"COMPLETE", "PRUNED"} & set(found)
        ):  # fmt: skip
            time.sleep(0.2)  # each worker in a trial, after a first one had finished
        os.killpg(first.pid, signal.SIGKILL)  # mid-trial
        first.wait(timeout=30)
        again = stack.enter_context(
            processes.started(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
        outputs = [w.communicate(timeout=processes.COMMAND)[0].decode() for w in (second, again)]
    assert second.returncode == 0 and again.returncode == 0, outputs
    found = states(tmp_path)
    assert "RUNNING" not in found and found.count("FAIL") >= 1, found  # the killed trial, marked failed
    assert sum(s in ("COMPLETE", "PRUNED") for s in found) == 6, found
    folders = [tmp_path / str(n) for n, s in enumerate(found) if s in ("COMPLETE", "PRUNED")]
    assert all((folder / "metrics.json").is_file() for folder in folders)  # each trial in its own run folder
