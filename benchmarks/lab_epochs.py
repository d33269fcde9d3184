"""The lab's first run, one epoch (`python train.py trainer.max_epochs=1`), as fresh processes at
--against (the code before: a commit, checked out in a temporary worktree) and at the working tree, in
bf16-mixed and 32-true, and the lab's own Keras code (scripts/keras_lab.py, under a Python with
tensorflow-cpu), alternating, best of --rounds each: benchmarks/results/cpu-<date>-lab-epochs.json.

    python -m benchmarks.lab_epochs --against <commit> [--keras-python /tmp/tf/bin/python]
    python -m benchmarks.lab_epochs --against <commit> --experiment speedrun --precisions bf16-mixed
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


def lab_epoch(commit: str | None, precision: str, args) -> dict:
    """`python train.py trainer.max_epochs=1` (the lab's first run, one epoch) as a fresh process, at a
    commit (checked out in a temporary worktree) or at the working tree (None); its epoch from metrics.json."""
    with tempfile.TemporaryDirectory() as tmp, checkout(commit, Path(tmp)) as root:
        command = [
            sys.executable,
            "train.py",
            *([f"experiment={args.experiment}"] if args.experiment else ["trainer.max_epochs=1"]),
            f"trainer.precision={precision}",
            "test=false",
            "callbacks.progress_bar.refresh_rate=0",
            f"hydra.run.dir={tmp}/run",
            f"data.data_dir={args.data_dir}",
        ]
        start = time.perf_counter()
        subprocess.run(
            command, cwd=root, env={**os.environ, "PYTHONPATH": str(root / "src")}, check=True, capture_output=True
        )
        wall = time.perf_counter() - start
        epoch = json.loads((Path(tmp) / "run" / "metrics.json").read_text())["history"][0]
    return {
        "commit": commit or code()["git_commit"],
        "precision": precision,
        "wall_seconds": wall,
        "epoch_seconds": epoch["train_seconds"] + epoch["val_seconds"],
        "val_acc": epoch["val_acc"],
    }


def keras_epoch(args) -> dict:
    out = subprocess.run(
        [args.keras_python, str(Path("scripts") / "keras_lab.py"), "--data-dir", args.data_dir, "--repeats", "1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    record = json.loads(out.strip().splitlines()[-1])
    return {**record, "commit": "keras", "precision": "float32", "epoch_seconds": record["epoch_seconds"][0]}


def lab_epochs(args) -> dict:
    """The baseline's one-epoch run at --against (the code before) and now, in bf16-mixed and 32-true,
    and the lab's Keras code (--keras-python), alternating, --rounds times; best of the rounds each."""
    runs = []
    for _ in range(args.rounds):
        for precision in args.precisions.split(","):
            for commit in (args.against, None):
                runs.append(lab_epoch(commit, precision, args))
                print(
                    f"cpu   {args.experiment or 'baseline'} epoch {runs[-1]['commit'][:7]} {precision:10} "
                    f"{runs[-1]['epoch_seconds']:6.1f} s",
                    flush=True,
                )
        if args.keras_python:
            runs.append(keras_epoch(args))
            print(f"cpu   baseline epoch keras   float32    {runs[-1]['epoch_seconds']:6.1f} s", flush=True)
    best = {}
    for r in runs:
        key = f"{'keras' if r['commit'] == 'keras' else ('before' if r['commit'] == args.against else 'now')} {r['precision']}"
        best[key] = min(best.get(key, float("inf")), r["epoch_seconds"])
    return {
        "against": args.against,
        "experiment": args.experiment or "lab_baseline, 1 epoch",
        "runs": runs,
        "best_epoch_seconds": best,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--against", required=True, help="the commit to compare with")
    p.add_argument("--keras-python", help="a Python with tensorflow-cpu (see scripts/keras_lab.py)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    p.add_argument("--experiment", help="an experiment of one epoch instead of the lab's first run (speedrun)")
    p.add_argument("--precisions", default="bf16-mixed,32-true", help="comma-separated")
    args = parsed(p)
    save_results(args, torch.device("cpu"), f"{args.experiment or 'lab'}-epochs", lab_epochs(args))


if __name__ == "__main__":
    main()
