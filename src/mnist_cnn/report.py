"""The sweep report: one table over a multirun's jobs, read only from their metrics.json files (so
it also works on a directory copied back from a cluster).

    python -m mnist_cnn.report outputs/multirun/<date>_<time>

Writes summary.csv (a row per job), summary.md (configurations with mean +- std over seeds, the
best by validation accuracy and whether its lead is larger than the seed-to-seed spread) and one
plot per swept hyperparameter. Test figures are reported, never used to choose.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from mnist_cnn.atomic import write_atomically  # noqa: E402

COLUMNS = ["job", "overrides", "status", "reason", "best_val_acc", "best_val_loss", "test_acc", "test_loss",
           "epochs", "fit_seconds", "train_samples_per_second"]
METRICS = ["best_val_acc", "test_acc", "best_val_loss", "test_loss", "fit_seconds", "train_samples_per_second"]


def read_jobs(sweep_dir: Path) -> list[dict]:
    """A row per job directory (one holding .hydra/ or metrics.json), in job order."""
    rows = []
    job_dirs = {p.parent for p in sweep_dir.glob("*/metrics.json")} | {p.parent for p in sweep_dir.glob("*/.hydra")}
    for job in sorted(job_dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)):
        metrics_file = job / "metrics.json"
        if metrics_file.exists():
            metrics = json.loads(metrics_file.read_text())
        else:
            metrics = {"status": "failed", "reason": "no metrics.json: killed, or still running"}
        overrides = metrics.get("overrides")
        if overrides is None and (job / ".hydra" / "overrides.yaml").exists():
            overrides = list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        reason = metrics.get("reason", "")
        if metrics.get("status") == "interrupted":
            reason = f"{metrics['signal']} at step {metrics['step']}; resume: {metrics['resume_command']}"
        rows.append({"job": job.name, "overrides": " ".join(overrides or []), "status": metrics.get("status", "failed"),
                     "reason": reason, **{k: metrics.get(k) for k in COLUMNS[4:]}})
    return rows


def swept_values(rows: list[dict]) -> dict[str, set[str]]:
    values = defaultdict(set)
    for row in rows:
        for override in row["overrides"].split():
            key, _, value = override.partition("=")
            values[key].add(value)
    return {k: v for k, v in values.items() if len(v) > 1 and k != "seed"}


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def group(rows: list[dict], label) -> dict[str, dict]:
    """{label: {'n': seeds that finished, metric: (mean, std)}} over the jobs that finished."""
    groups = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            groups[label(row)].append(row)
    return {name: {"n": len(members), **{m: mean_std([r[m] for r in members if r[m] is not None])
                                         for m in METRICS if any(r[m] is not None for r in members)}}
            for name, members in groups.items()}


def fmt(pair, digits=4) -> str:
    mean, std = pair
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def verdict(configs: dict[str, dict]) -> str:
    ranked = sorted(configs, key=lambda c: configs[c]["best_val_acc"][0], reverse=True)
    if not ranked:
        return "No job finished."
    best = configs[ranked[0]]
    text = f"Best by mean validation accuracy: **{ranked[0]}** ({fmt(best['best_val_acc'])}, {best['n']} seed(s))."
    if len(ranked) == 1:
        return text
    second = configs[ranked[1]]
    lead = best["best_val_acc"][0] - second["best_val_acc"][0]
    text += f" Runner-up: {ranked[1]} ({fmt(second['best_val_acc'])}). Lead: {lead:.4f}."
    stds = (best["best_val_acc"][1], second["best_val_acc"][1])
    if None in stds:
        return text + " With one seed per configuration the seed-to-seed spread is unknown: repeat with seed=0,1,2."
    spread = math.hypot(*stds)  # the standard deviation of a difference of two single runs
    if lead > spread:
        return text + f" It exceeds the seed-to-seed spread ({spread:.4f}): the difference is larger than noise."
    return text + (f" It is within the seed-to-seed spread ({spread:.4f}): these settings are not distinguishable"
                   " with this many seeds.")


def summary_markdown(rows: list[dict], configs: dict[str, dict]) -> str:
    ranked = sorted(configs, key=lambda c: configs[c]["best_val_acc"][0], reverse=True)
    counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in ("ok", "failed", "interrupted"))
    lines = ["# Sweep summary", "", f"{len(rows)} jobs: {counts}. Mean ± standard deviation over seeds; the best "
             "configuration is chosen by validation accuracy alone (★); test accuracy is reported, never used to choose.",
             "", "| configuration | seeds | val_acc | test_acc | val_loss | fit s | train samples/s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ranked:
        c = configs[name]
        mark = " ★" if name == ranked[0] else ""
        lines.append(f"| {name}{mark} | {c['n']} | {fmt(c['best_val_acc'])} | {fmt(c['test_acc'])} | "
                     f"{fmt(c['best_val_loss'])} | {fmt(c['fit_seconds'], 1)} | {fmt(c['train_samples_per_second'], 0)} |")
    lines += ["", verdict(configs), ""]
    for status, title in (("failed", "Failed jobs"), ("interrupted", "Interrupted jobs (stopped by a signal; each resumes)")):
        jobs = [r for r in rows if r["status"] == status]
        if jobs:
            lines += [f"## {title}", ""] + [f"- job {r['job']} ({r['overrides']}): {r['reason']}" for r in jobs] + [""]
    return "\n".join(lines)


def plot(rows: list[dict], key: str, path: Path) -> None:
    """Mean ± std of validation and test accuracy against one swept hyperparameter."""
    def value_of(row):
        return next(o.partition("=")[2] for o in row["overrides"].split() if o.startswith(f"{key}="))

    stats = group([r for r in rows if f"{key}=" in r["overrides"]], value_of)
    numeric = all(_is_number(v) for v in stats)
    xs = sorted(stats, key=float if numeric else str)
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, label in (("best_val_acc", "validation"), ("test_acc", "test")):
        means = [stats[x][metric][0] for x in xs]
        stds = [stats[x][metric][1] or 0.0 for x in xs]
        positions = [float(x) for x in xs] if numeric else list(range(len(xs)))
        ax.errorbar(positions, means, yerr=stds, marker="o", capsize=4, label=f"{label} accuracy")
    if numeric and key.endswith("batch_size"):
        ax.set_xscale("log", base=2)
    if not numeric:
        ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel(key)
    ax.set_ylabel("accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_atomically(path, buffer.getvalue())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_report(sweep_dir: str | Path) -> list[dict]:
    sweep_dir = Path(sweep_dir)
    rows = read_jobs(sweep_dir)
    with io.StringIO() as buffer:
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(sweep_dir / "summary.csv", buffer.getvalue())
    swept = swept_values(rows)

    def configuration(row: dict) -> str:
        """The job's values of the swept keys (seed aside): jobs that share them repeat one setting."""
        return " ".join(o for o in row["overrides"].split() if o.partition("=")[0] in swept) or "(all jobs)"

    configs = group(rows, configuration)
    write_atomically(sweep_dir / "summary.md", summary_markdown(rows, configs))
    for key in swept:
        plot(rows, key, sweep_dir / f"sweep_{key.replace('/', '_')}.png")
    return rows


class SweepReport(Callback):
    """Hydra callback: the report at the end of every multirun.

    Hydra turns a callback's exception into a warning, so failures are kept in `failures` for the
    entry point to turn into its exit status."""

    failures: list[str] = []

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_report(sweep_dir)
        print(f"Sweep report: {sweep_dir / 'summary.md'}")
        failed = [r for r in rows if r["status"] != "ok"]
        if failed:
            SweepReport.failures.append(f"{len(failed)} of {len(rows)} jobs failed; see {sweep_dir / 'summary.csv'}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print(f"mnist-report: error: {' '.join(args) or 'nothing'}: not a multirun directory "
              "(usage: mnist-report <multirun directory>)", file=sys.stderr)
        sys.exit(2)
    try:
        rows = write_report(args[0])
    except OSError as exc:  # a full disk, a read-only copy of the sweep
        print(f"mnist-report: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        sys.exit(1)
    print((Path(args[0]) / "summary.md").read_text())
    sys.exit(1 if any(r["status"] != "ok" for r in rows) else 0)


if __name__ == "__main__":
    main()
