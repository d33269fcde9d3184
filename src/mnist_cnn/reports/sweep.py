"""The sweep report: one table over a multirun's jobs, read only from their metrics.json files (so
it also works on a directory copied back from a cluster).

    mnist-report outputs/multirun/<date>_<time>        # a sweep: writes its report files
    mnist-report outputs/runs/*                        # single runs: the same report, beside them (--out)

For a sweep, writes summary.csv (a row per job, with its configuration's figures), summary.md (configurations with
their mean and 95% interval over seeds, the best by validation accuracy, and its difference from each
other configuration with Welch's 95% interval: distinguishable or not, and if not, roughly how many
seeds would tell) and one plot per swept hyperparameter. Test figures are reported, never used to choose.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import NoReturn

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from mnist_cnn.atomic import write_atomically
from mnist_cnn.errors import UserError
from mnist_cnn.figures import save_figure, sweep_figure
from mnist_cnn.multirun import job_folders
from mnist_cnn.reports.intervals import estimate
from mnist_cnn.reports.summary import comparisons, summary_markdown
from mnist_cnn.tracking import store as tracking_store

COLUMNS = [
    "job",
    "overrides",
    "status",
    "reason",
    "best_val_acc",
    "best_val_loss",
    "test_acc",
    "test_loss",
    "epochs",
    "fit_seconds",
    "train_samples_per_second",
    "read_from",
]
# The configuration's figures, repeated on each of its jobs' rows (empty for the best's own difference)
CONFIG_COLUMNS = [
    "configuration",
    "config_val_acc_mean",
    "config_val_acc_ci95_low",
    "config_val_acc_ci95_high",
    "best_minus_this",
    "best_minus_this_ci95_low",
    "best_minus_this_ci95_high",
    "distinguishable_from_best",
    "seeds_to_tell",
]
# Override keys that place, name or show a run, and change nothing it computes
NOT_SETTINGS = ("hydra.", "hydra/", "name", "callbacks.progress_bar.", "data.data_dir", "logger", "resume", "explain",
                "figures")  # fmt: skip
METRICS = ["best_val_acc", "test_acc", "best_val_loss", "test_loss", "fit_seconds", "train_samples_per_second"]


def read_jobs(sweep_dir: Path) -> list[dict]:
    """A row per job directory (one holding .hydra/ or metrics.json), in job order."""
    return [row for job in job_folders(sweep_dir, ("metrics.json", ".hydra")) for row in read_job(job.name, job)]


def read_job(name: str, job: Path) -> list[dict]:
    """A job's or a run's row (a row per reading, for a run with read_epochs), its overrides as settings."""
    metrics = read_metrics(job)
    overrides = metrics.get("overrides")
    if overrides is None and (job / ".hydra" / "overrides.yaml").exists():
        overrides = list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
    reason = metrics.get("reason", "")
    if metrics.get("status") == "interrupted":
        reason = f"{metrics['signal']} at step {metrics['step']}; resume: {metrics['resume_command']}"
    row = {
        "job": name,
        "overrides": " ".join(settings(overrides or [])),
        "status": metrics.get("status", "failed"),
        "reason": reason,
        **{k: metrics.get(k) for k in COLUMNS[4:]},
    }
    return readings(row, metrics) if metrics.get("read_at_epochs") else [row]


def settings(overrides: list[str]) -> list[str]:
    """The overrides that change what a run computes, as key=value: where its files go, its name, its console,
    its logger and the data's folder left out, and Hydra's ++ and + (add or force a key) dropped."""
    found = [o.lstrip("+") for o in overrides]
    return [o for o in found if not o.partition("=")[0].startswith(NOT_SETTINGS)]


def read_metrics(run: Path) -> dict:
    """A run's metrics.json; one that is missing or damaged is a failed run, named, never a traceback."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
        return metrics
    except FileNotFoundError:
        return {"status": "failed", "reason": "no metrics.json: killed, or still running"}
    except (OSError, ValueError) as exc:
        print(f"mnist-report: skipped {run / 'metrics.json'}: damaged ({exc})", file=sys.stderr)
        return {"status": "failed", "reason": f"metrics.json damaged: {exc}"}


def readings(row: dict, metrics: dict) -> list[dict]:
    """A run with read_epochs stands for one k-epoch run per reading: a row each, as
    trainer.max_epochs=k, saying it was read (mnist_cnn.training.epoch_readings). No fit time of its own."""
    others = [o for o in row["overrides"].split() if not o.startswith(("trainer.max_epochs=", "read_epochs="))]
    return [
        {
            **row,
            **{k: figures.get(k) for k in COLUMNS[4:]},
            "job": f"{row['job']}@{k}",
            "overrides": " ".join([*others, f"trainer.max_epochs={k}"]),
            "read_from": f"job {row['job']}, epoch {k} of {metrics['epochs']}",
        }
        for k, figures in metrics["read_at_epochs"].items()
    ]


def swept_values(rows: list[dict]) -> dict[str, set[str]]:
    values = defaultdict(set)
    for row in rows:
        for override in row["overrides"].split():
            key, _, value = override.partition("=")
            values[key].add(value)
    return {k: v for k, v in values.items() if len(v) > 1 and k != "seed"}


def group(rows: list[dict], label) -> dict[str, dict]:
    """{label: {'n': seeds that finished, metric: Estimate}} over the jobs that finished."""
    groups = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            groups[label(row)].append(row)
    return {
        name: {
            "n": len(members),
            **{
                m: estimate([r[m] for r in members if r[m] is not None])
                for m in METRICS
                if any(r[m] is not None for r in members)
            },
        }
        for name, members in groups.items()
    }


def plot(rows: list[dict], key: str, path: Path) -> None:
    """Mean and 95% interval of validation and test accuracy against one swept hyperparameter."""

    def value_of(row):
        return next(o.partition("=")[2] for o in row["overrides"].split() if o.startswith(f"{key}="))

    save_figure(sweep_figure(group([r for r in rows if f"{key}=" in r["overrides"]], value_of), key), path)


def write_report(sweep_dir: str | Path, rows: list[dict] | None = None, of: str = "sweep") -> list[dict]:
    """summary.csv, summary.md and a plot per swept setting in `sweep_dir`: of its jobs, or of `rows` (single runs',
    of="runs"). Returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = read_jobs(sweep_dir) if rows is None else rows
    swept = swept_values(rows)

    def configuration(row: dict) -> str:
        """The job's values of the swept keys (seed aside): jobs that share them repeat one setting."""
        return " ".join(o for o in row["overrides"].split() if o.partition("=")[0] in swept) or "(all jobs)"

    configs = group(rows, configuration)
    differences = comparisons(configs)
    for row in rows:
        row["configuration"] = configuration(row)
        val = configs.get(row["configuration"], {}).get("best_val_acc")
        d, seeds = differences.get(row["configuration"], (None, None))
        low_high = (val.mean - val.half_width, val.mean + val.half_width) if val and val.half_width else (None, None)
        row.update(
            config_val_acc_mean=val.mean if val else None,
            config_val_acc_ci95_low=low_high[0],
            config_val_acc_ci95_high=low_high[1],
            best_minus_this=d.value if d else None,
            best_minus_this_ci95_low=d.low if d else None,
            best_minus_this_ci95_high=d.high if d else None,
            distinguishable_from_best=d.distinguishable if d else None,
            seeds_to_tell=seeds,
        )
    with io.StringIO() as buffer:
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS + CONFIG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(sweep_dir / "summary.csv", buffer.getvalue())
    write_atomically(sweep_dir / "summary.md", summary_markdown(rows, configs, differences, of))
    for key in swept:
        plot(rows, key, sweep_dir / f"sweep_{key.replace('/', '_')}.png")
    return rows


class SweepReport(Callback):
    """Hydra callback: each multirun's report, in its folder and (logger=mlflow) on its parent run in MLflow.
    A sweep with a failed job ends with exit status 1 and one line saying so: SystemExit, since Hydra turns
    a callback's Exception into a warning."""

    def on_multirun_start(self, config, **kwargs) -> None:
        mlflow = (config.get("logger") or {}).get("mlflow")
        if mlflow is not None:
            tracking_store.start_sweep(
                Path(config.hydra.sweep.dir),
                mlflow.tracking_uri,
                mlflow.experiment_name,
                list(config.hydra.overrides.task),
                list(config.hydra.sweeper.get("params") or {}),
            )

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if str(config.hydra.sweeper.get("_target_")).endswith(".StudySweeper"):
            tracking_store.finish_sweep(sweep_dir, ok=True)  # a search reports on its study (mnist_cnn.search)
            return
        rows = write_report(sweep_dir)
        print(f"Sweep report: {sweep_dir / 'summary.md'}")
        failed = [r for r in rows if r["status"] != "ok"]
        tracking_store.finish_sweep(sweep_dir, ok=not failed)
        if failed:
            print(
                f"mnist-train: {len(failed)} of {len(rows)} jobs failed; see {sweep_dir / 'summary.csv'}",
                file=sys.stderr,
            )
            sys.exit(1)


def main(args) -> None:
    """mnist-report, its command line parsed (mnist_cnn.cli.commands)."""
    # `mnist-report outputs/runs/*` run again also names the report it wrote there: left out, not refused
    dirs = [Path(d) for d in args.dirs if not (Path(d).is_file() and is_report_file(Path(d)))]
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        refuse(f"{missing[0]}: no such directory")
    runs = [d for d in dirs if (d / "metrics.json").exists() or (d / ".hydra").is_dir()]
    if len(dirs) == 1 and not runs:
        if not any(dirs[0].glob("*/metrics.json")) and not any(dirs[0].glob("*/.hydra")):
            refuse(f"{dirs[0]}: neither a multirun directory (jobs with metrics.json) nor a run directory")
        rows = write_report(dirs[0])  # a full disk, a read-only copy of the sweep: the guard's one line
        print((dirs[0] / "summary.md").read_text())
        sys.exit(1 if any(r["status"] != "ok" for r in rows) else 0)
    others = [d for d in dirs if d not in runs]
    if others:
        refuse(f"{others[0]}: not a run directory (no metrics.json); give one multirun directory, or run directories")
    out = Path(args.out) if args.out else Path(os.path.commonpath([d.resolve() for d in runs]))
    if out in {d.resolve() for d in runs}:  # one run, or runs inside one another: beside them
        out = out.parent
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, [row for run in runs for row in read_job(str(run), run)], of="runs")
    print((out / "summary.md").read_text())
    print(f"Written: {out / 'summary.md'}, {out / 'summary.csv'}")


def is_report_file(path: Path) -> bool:
    return path.name in ("summary.md", "summary.csv") or (path.name.startswith("sweep_") and path.suffix == ".png")


def refuse(reason: str) -> NoReturn:
    raise UserError(f"{reason} (see mnist-report --help)")
