"""The model the package carries: a finished run's tested checkpoint, slimmed to what predicting needs (the
network's class, arguments and weights, its data's normalisation, and where it came from), written to
src/mnist_cnn/bundled/best.ckpt. Prints its size and SHA-256, which mnist_cnn.inference.loader.BUNDLED_SHA256
and docs/bundled.md then hold.

    python train.py -m experiment=best seed=0,1,2     # about 17 minutes a seed on 2 CPU cores
    python scripts/bundle_model.py outputs/multirun/<date>_<time>/1 [--handwriting-set handwriting.npz]

The seed is chosen by validation accuracy (best_val_acc), never by a test score.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shlex
from pathlib import Path

import torch

from mnist_cnn.atomic import write_atomically
from mnist_cnn.inference.loader import BUNDLED, run_checkpoint

OUT = Path(__file__).resolve().parents[1] / "src" / "mnist_cnn" / BUNDLED


def slim(run: Path, extra: dict) -> dict:
    checkpoint = torch.load(run_checkpoint(run), map_location="cpu", weights_only=True)
    metrics = json.loads((run / "metrics.json").read_text())
    data = checkpoint["datamodule_hyper_parameters"]
    return {
        "mnist_cnn": checkpoint["mnist_cnn"],
        "state_dict": {k: v.float().contiguous() for k, v in checkpoint["state_dict"].items() if k.startswith("net.")},
        "datamodule_hyper_parameters": {"dataset": data["dataset"], "normalize": data["normalize"]},
        "origin": {
            "run": run.name,
            "command": shlex.join(["python", "train.py", *metrics["overrides"]]),
            "commit": metrics["provenance"]["git_commit"],
            "test_acc": metrics["test_acc"],
            "best_val_acc": metrics["best_val_acc"],
            "epochs": metrics["epochs"],
            **extra,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run (of experiment=best)")
    parser.add_argument("--handwriting-set", type=Path, help="scripts/handwriting.py's set: its accuracy is recorded")
    args = parser.parse_args()
    extra = {}
    if args.handwriting_set:
        from handwriting import score  # scripts/handwriting.py, beside this script

        extra["handwriting_set_acc"] = score(args.handwriting_set, [str(args.run)])[0]["accuracy"]
    buffer = io.BytesIO()
    torch.save(slim(args.run, extra), buffer)
    OUT.parent.mkdir(exist_ok=True)
    write_atomically(OUT, buffer.getvalue())
    print(f"wrote {OUT}: {len(buffer.getvalue()):,} bytes, sha256 {hashlib.sha256(buffer.getvalue()).hexdigest()}")


if __name__ == "__main__":
    main()
