"""`python train.py hparams_search=optuna`: the search that Hydra's sweeper (hydra_plugins.mnist_cnn_search) runs,
on Optuna's current API (ask and tell). Written here because hydra-optuna-sweeper pins optuna < 3, whose
storage does not run on SQLAlchemy 2, and runs its trials in batches that leave workers idle. The study is stored (mnist_cnn.search.study), `n_trials` is the study's total:
the same command run again, or started on several machines at once, works on the one study until it holds
n_trials finished trials (complete or pruned). Each trial is one job of the launcher, in its own folder named by
its trial number; a trial clearly behind the others at an epoch is pruned there (mnist_cnn.search.pruning)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from mnist_cnn.atomic import write_atomically
from mnist_cnn.inference.loader import run_record
from mnist_cnn.search import report
from mnist_cnn.search.space import distributions, override
from mnist_cnn.search.study import open_study, storage_url

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def search(
    launcher,
    config: DictConfig,
    arguments: list[str],
    study_name: str,
    n_trials: int,
    params: dict,
    direction: str = "maximize",
    storage: str | None = None,
    sampler: Any = None,
    pruner: Any = None,
    max_failures: int = 3,
    heartbeat_interval: int = 5,
    grace_period: int = 30,
) -> None:
    """Ask the study for trials and launch each as one job until it holds n_trials finished ones, waiting while
    the trials of other workers still running could bring it there, or until this worker has seen max_failures
    trials fail; then write the search's report. A signal stops the search where its trial stopped."""
    sweep_dir = Path(config.hydra.sweep.dir)
    url = storage_url(storage, sweep_dir)
    study = open_study(study_name, url, direction, sampler, pruner, heartbeat_interval, grace_period)
    space = distributions(OmegaConf.to_container(OmegaConf.create(dict(params))))
    remember(sweep_dir, config)
    keys = {key.lstrip("+"): key for key in params}  # a parameter's name, and its key as written (Hydra's + kept)
    failures = 0
    while failures < max_failures:
        optuna.storages.fail_stale_trials(study)  # a killed worker's trial, once its heartbeat stopped
        states = [t.state for t in study.get_trials(deepcopy=False)]
        finished, running = sum(s in FINISHED for s in states), states.count(TrialState.RUNNING)
        if finished >= n_trials:
            break
        if finished + running >= n_trials:  # the other workers' trials may finish it, or may fail
            time.sleep(heartbeat_interval)
            continue
        trial = study.ask(space)
        if surplus(study, trial, n_trials):  # another worker asked for the last one at the same moment
            study.tell(trial, state=TrialState.FAIL)
            continue
        overrides = [*arguments, *(override(keys[k], v) for k, v in trial.params.items())]
        try:
            with heartbeat(study, trial):
                launcher.launch([overrides], initial_job_idx=trial.number)
        except BaseException:  # a signal: the trial stopped, and was said; the study goes on where it was
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        failures += told(study, trial, sweep_dir / str(trial.number)) == TrialState.FAIL
    report.write(study, sweep_dir, list(keys))
    log.info("Search report: %s (study %s, %s)", sweep_dir / "search.md", study_name, url)


def surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether the trials asked before this one, finished or running, already make n_trials."""
    before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
    return sum(t.state in (*FINISHED, TrialState.RUNNING) for t in before) >= n_trials


def remember(sweep_dir: Path, config: DictConfig) -> None:
    """search.json: the command line's overrides, which `resume=<this folder>` repeats to continue the study."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    given = [*config.hydra.overrides.hydra, *config.hydra.overrides.task]  # hydra.sweeper.n_trials= among them
    overrides = [o for o in given if not o.startswith(("resume=", "hydra.sweep.dir=", "hydra.run.dir="))]
    write_atomically(sweep_dir / "search.json", json.dumps({"overrides": overrides}, indent=2) + "\n")


def told(study: optuna.Study, trial: optuna.Trial, folder: Path) -> TrialState:
    """The trial's end, as its job recorded it: complete with its validation accuracy, pruned at an epoch, or failed."""
    record = run_record(folder)
    status = record.get("status")
    if status == "ok" and record.get("best_val_acc") is not None:
        study.tell(trial, record["best_val_acc"], skip_if_finished=True)
        return TrialState.COMPLETE
    state = TrialState.PRUNED if status == "pruned" else TrialState.FAIL
    study.tell(trial, state=state, skip_if_finished=True)
    return state


class heartbeat:
    """The trial's heartbeat, beaten while its job runs at the storage's interval, where the storage keeps them
    (a database)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial):
        self.storage, self.trial_id, self.stop = study._storage, trial._trial_id, threading.Event()
        self.interval = getattr(self.storage, "get_heartbeat_interval", lambda: None)()

    def __enter__(self):
        if self.interval:
            self.thread = threading.Thread(target=self.beat, daemon=True)
            self.thread.start()
        return self

    def beat(self) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __exit__(self, *exc) -> None:
        self.stop.set()
