"""What a run takes after its fit, and each stage's seconds: `python train.py <run>` as fresh processes at
--against (the code before: a commit, checked out in a temporary worktree) and at the working tree,
alternating, best of --rounds each: benchmarks/results/cpu-<date>-stages.json. The fit ends when its last
checkpoint is written (the newest checkpoint file's time: a commit without stage timings is measured the
same way), and the time after it runs to the process's exit; the working tree's runs add their own stage
timings (metrics.json's "stages").

    python -m benchmarks.stages --against <commit> [--rounds 2]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import checkout, code, parsed, parser, save_results

RUNS = {
    "speedrun": ["experiment=speedrun"],
    # the lab's first run, one epoch: what follows its fit does not grow with its epochs
    "lab_baseline_1_epoch": ["trainer.max_epochs=1"],
}


def timed_process(root: Path, overrides: list[str], args, folder: Path) -> dict:
    """One `python train.py` at `root`: the whole process, the fit (from metrics.json) and the time after it."""
    run = folder / f"run-{time.monotonic_ns()}"
    command = [sys.executable, "train.py", *overrides, "callbacks.progress_bar.refresh_rate=0",
               f"hydra.run.dir={run}", f"data.data_dir={args.data_dir}"]  # fmt: skip
    start, wall_start = time.perf_counter(), time.time()
    subprocess.run(
        command, cwd=root, env={**os.environ, "PYTHONPATH": str(root / "src")}, check=True, capture_output=True
    )
    process, ended = time.perf_counter() - start, time.time()
    metrics = json.loads((run / "metrics.json").read_text())
    fit_ended = max(p.stat().st_mtime for p in (run / "checkpoints").glob("*.ckpt"))
    return {
        "process_seconds": process,
        "fit_seconds": metrics["fit_seconds"],
        "after_fit_seconds": ended - fit_ended,
        "before_fit_seconds": fit_ended - wall_start - metrics["fit_seconds"],
        "process_over_fit": process / metrics["fit_seconds"],
        "test_acc": metrics["test_acc"],
        **({"stages": metrics["stages"]} if "stages" in metrics else {}),
    }


def best(runs: list[dict], key: str) -> float:
    return min(r[key] for r in runs)


def stages(args) -> dict:
    found: dict = {name: {"before": [], "now": []} for name in RUNS}
    with tempfile.TemporaryDirectory() as tmp, checkout(args.against, Path(tmp)) as before:
        for _ in range(args.rounds):
            for name, overrides in RUNS.items():
                for label, root in (("before", before), ("now", Path.cwd())):
                    found[name][label].append(timed_process(root, overrides, args, Path(tmp)))
                    r = found[name][label][-1]
                    print(
                        f"cpu   {name:22} {label:6} process {r['process_seconds']:5.1f} s, fit "
                        f"{r['fit_seconds']:5.1f} s, after the fit {r['after_fit_seconds']:4.1f} s",
                        flush=True,
                    )
    summary = {
        name: {
            label: {
                k: best(runs, k) for k in ("process_seconds", "fit_seconds", "after_fit_seconds", "process_over_fit")
            }
            for label, runs in pair.items()
        }
        for name, pair in found.items()
    }
    for pair in summary.values():
        pair["after_fit_now_over_before"] = pair["now"]["after_fit_seconds"] / pair["before"]["after_fit_seconds"]
    return {"against": args.against, "now": code()["git_commit"], "rounds": args.rounds, "best": summary, "runs": found}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--against", required=True, help="the commit to compare with")
    p.add_argument("--rounds", type=int, default=2)
    save_results(args := parsed(p), torch.device("cpu"), "stages", stages(args))


if __name__ == "__main__":
    main()
