"""A sweep's summary.md in words and numbers: its configurations ranked by mean validation accuracy, each one's
difference from the best with Welch's 95% interval, and the verdict: distinguishable, or not and roughly how
many seeds would tell (mnist_cnn.reports.sweep reads the jobs and writes the files)."""

from __future__ import annotations

from mnist_cnn.reports.intervals import Difference, Estimate, seeds_to_separate, welch


def fmt(e: Estimate | None, digits=4) -> str:
    if e is None:  # not measured: a reading's fit time, a run without test
        return "—"
    return f"{e.mean:.{digits}f}" + (f" ± {e.half_width:.{digits}f}" if e.half_width is not None else "")


def fmt_time(e: Estimate | None, digits: int) -> str:
    """A time or speed: an interval wider than the mean (jobs run side by side) says nothing, and is said to."""
    if e is not None and e.half_width is not None and e.half_width > e.mean:
        return f"{e.mean:.{digits}f} (varied more than its mean)"
    return fmt(e, digits)


def shared(overrides: list[list[str]]) -> list[str]:
    """The overrides every job (or run) was given alike: the settings the comparison holds fixed."""
    return [o for o in overrides[0] if all(o in others for others in overrides[1:])] if overrides else []


def ranked(configs: dict[str, dict]) -> list[str]:
    return sorted(configs, key=lambda c: configs[c]["best_val_acc"].mean, reverse=True)


def comparisons(configs: dict[str, dict]) -> dict[str, tuple[Difference, int | None]]:
    """For every configuration but the best: the best's lead in val_acc over it (Welch), and where that
    is not distinguishable, the seeds per configuration that would likely tell them apart."""
    order = ranked(configs)
    best, out = configs[order[0]]["best_val_acc"] if order else None, {}
    for name in order[1:]:
        d = welch(best, configs[name]["best_val_acc"])
        out[name] = (d, None if d.distinguishable else seeds_to_separate(best, configs[name]["best_val_acc"]))
    return out


def verdict(configs: dict[str, dict], differences: dict[str, tuple[Difference, int | None]]) -> list[str]:
    order = ranked(configs)
    if not order:
        return ["No job finished."]
    best = configs[order[0]]
    lines = [f"Best by mean validation accuracy: **{order[0]}** ({fmt(best['best_val_acc'])}, {best['n']} seed(s))."]
    if len(order) == 1:
        return lines
    if best["best_val_acc"].sd is None:
        return lines + ["With one seed per configuration the seed-to-seed spread is unknown: repeat with seed=0,1,2."]
    lines += [
        "",
        "| best minus | val_acc difference | 95% interval (Welch) | distinguishable | seeds per configuration to tell |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (d, seeds) in differences.items():
        if d.low is None:
            lines.append(f"| {name} | {d.value:+.4f} | one seed: unknown | | |")
            continue
        tell = "" if d.distinguishable else (f"about {seeds}" if seeds else "more than 1000")
        lines.append(
            f"| {name} | {d.value:+.4f} | [{d.low:+.4f}, {d.high:+.4f}] | "
            f"{'yes' if d.distinguishable else 'no'} | {tell} |"
        )
    close = [name for name, (d, _) in differences.items() if d.distinguishable is False]
    if close:
        lines += [
            "",
            f"Not distinguishable from the best with {best['n']} seeds: {', '.join(close)}: their 95% "
            "intervals of the difference include zero.",
        ]
    else:
        lines += ["", "The best is distinguishable from every other configuration: each interval excludes zero."]
    return lines


def summary_markdown(rows: list[dict], configs: dict[str, dict], differences: dict, of: str = "sweep") -> str:
    """The report's text; `of`: "sweep" (a multirun's jobs) or "runs" (single runs side by side)."""
    order = ranked(configs)
    counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in ("ok", "failed", "interrupted"))
    fixed = shared([r["overrides"].split() for r in rows])
    lines = [
        f"# {of.capitalize()} summary",
        "",
        f"{len(rows)} {'jobs' if of == 'sweep' else 'runs'}: {counts}. Mean ± the half-width of its 95% interval over seeds (Student's t); the best "
        "configuration is chosen by validation accuracy alone (★); test accuracy is reported, never used to choose.",
        "",
        f"Every {'job was run with' if of == 'sweep' else 'run was given'}: "
        + (" ".join(f"`{o}`" for o in fixed) if fixed else "the defaults (no override shared by all)")
        + ".",
        "",
        "| configuration | seeds | val_acc | test_acc | val_loss | fit s | train samples/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in order:
        c = configs[name]
        mark = " ★" if name == order[0] else ""
        lines.append(
            f"| {name}{mark} | {c['n']} | {fmt(c.get('best_val_acc'))} | {fmt(c.get('test_acc'))} | "
            f"{fmt(c.get('best_val_loss'))} | {fmt_time(c.get('fit_seconds'), 1)} | {fmt_time(c.get('train_samples_per_second'), 0)} |"
        )
    read = [r for r in rows if r["read_from"]]
    if read:
        lengths = sorted({r["read_from"].rpartition(" of ")[2] for r in read})
        lines += [
            "",
            f"How it was made: these {len(read)} jobs were not run separately; each was read from one "
            f"{' or '.join(lengths)}-epoch run per seed (read_epochs): at epoch k, the checkpoint that a k-epoch run "
            "would have kept as best, tested. Nothing in a run depends on its length, so this gives exactly "
            "what separate runs give (mnist_cnn.training.epoch_readings; tests/test_sweeps.py compares them figure for "
            "figure). Readings have no fit time of their own (—).",
        ]
    lines += ["", *verdict(configs, differences), ""]
    for status, title in (
        ("failed", "Failed jobs"),
        ("interrupted", "Interrupted jobs (stopped by a signal; each resumes)"),
    ):
        jobs = [r for r in rows if r["status"] == status]
        if jobs:
            lines += [f"## {title}", ""] + [f"- job {r['job']} ({r['overrides']}): {r['reason']}" for r in jobs] + [""]
    return "\n".join(lines)
