"""A search's report, in its folder: search.md (the best trial's settings, validation accuracy and run folder,
its test accuracy shown but never used to choose), trials.csv (every trial's settings, state, validation
accuracy and epochs), and Optuna's own plots: the optimisation history, the parameters' importances and each
parameter against the validation accuracy (a log axis where it is searched on a log scale)."""

from __future__ import annotations

import csv
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from mnist_cnn.atomic import write_atomically
from mnist_cnn.figures import save_figure
from mnist_cnn.inference.loader import run_record


def write(study: optuna.Study, folder: Path, params: list[str]) -> None:
    trials = study.get_trials(deepcopy=False)
    rows = [row(t, folder) for t in trials]
    with io.StringIO() as buffer:
        writer = csv.DictWriter(buffer, fieldnames=["trial", "state", "best_val_acc", "epochs", "folder", *params])
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(folder / "trials.csv", buffer.getvalue())
    write_atomically(folder / "search.md", summary(study, rows, folder))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)  # "categorical units" for choice()s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        from optuna.visualization import matplotlib as plots

        if complete:
            save_figure(figure(plots.plot_optimization_history(study)), folder / "optimization_history.png")
            save_figure(figure(plots.plot_slice(study)), folder / "parameters.png")
        if len(complete) >= 2 and len(params) >= 2:
            save_figure(figure(plots.plot_param_importances(study)), folder / "param_importances.png")


def figure(axes):
    """The figure of what Optuna's plot returns: its axes, or an array of them (one per parameter)."""
    return np.ravel(axes)[0].figure


def row(trial: optuna.trial.FrozenTrial, folder: Path) -> dict:
    steps = sorted(trial.intermediate_values)
    return {
        "trial": trial.number,
        "state": trial.state.name.lower(),
        "best_val_acc": trial.value,
        "epochs": steps[-1] if steps else None,
        "folder": str(folder / str(trial.number)),
        **trial.params,
    }


def summary(study: optuna.Study, rows: list[dict], folder: Path) -> str:
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running")}
    lines = [f"# Search {study.study_name}", "", ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ".", ""]
    try:
        best = study.best_trial
    except ValueError:
        return "\n".join([*lines, "No trial has completed yet.", ""])
    run = folder / str(best.number)
    test = run_record(run).get("test_acc")
    lines += [
        f"Best by validation accuracy: trial {best.number}, val_acc {best.value:.4f}, in {run}.",
        "",
        "| parameter | value |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in best.params.items()),
        "",
        f"Its test accuracy, reported and never used to choose: {test:.4f}." if test is not None else "",
        "",
    ]
    return "\n".join(lines)
