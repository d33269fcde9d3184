"""How soon the commands answer: each command's `--help`, and `mnist-predict` of one image against
`python -c "import torch"` (the least any command that computes must pay), as fresh processes on this
machine, alternated round by round, median of --rounds each; and how long the demo page takes to answer
a drawing (read, attributions, feature maps), with the model the package carries, median of 20:
benchmarks/results/cpu-<date>-startup.json. The image is read with a checkpoint trained here for a few
batches (its weights do not change the time).

    python -m benchmarks.startup [--rounds 7]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import parsed, parser, save_results

COMMANDS = ("mnist-train", "mnist-predict", "mnist-export", "mnist-report", "mnist-demo")


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr[-800:]}")
    return took


def trained_checkpoint(folder: Path, data_dir: str) -> Path:
    subprocess.run(
        [
            shutil.which("mnist-train"),
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=5",
            "trainer.limit_val_batches=2",
            "test=false",
            "logger=csv",
            f"data.data_dir={data_dir}",
            f"hydra.run.dir={folder / 'run'}",
        ],
        check=True,
        capture_output=True,
    )
    return folder / "run" / "checkpoints" / "last.ckpt"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=7)
    args = parsed(p)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = trained_checkpoint(folder, args.data_dir)
        digit = Image.new("L", (28, 28), 0)
        digit.paste(255, (12, 6, 16, 22))  # a stroke: a one
        digit.save(folder / "digit.png")
        runs = {f"{c} --help": [shutil.which(c), "--help"] for c in COMMANDS}
        runs["import torch"] = [sys.executable, "-c", "import torch"]
        runs["mnist-predict, one image"] = [shutil.which("mnist-predict"), str(checkpoint), str(folder / "digit.png")]
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, command in runs.items():
                times[name].append(seconds(command))
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, value in median.items():
        print(f"{name:28} {value:6.3f} s (median of {args.rounds})")
    ratio = median["mnist-predict, one image"] / median["import torch"]
    print(f"mnist-predict of one image / import torch: {ratio:.2f}x")
    update = demo_update_seconds()
    print(f"the demo's answer to a drawing: {update:.3f} s (median of 20)")
    save_results(
        args,
        torch.device("cpu"),
        "startup",
        {
            "rounds": args.rounds,
            "seconds": times,
            "median_seconds": median,
            "predict_over_import_torch": ratio,
            "demo_update_seconds": update,
        },
    )


def demo_update_seconds() -> float:
    """The demo's work per drawing update (mnist_cnn.cli.demo.Reader.read) on a drawn 1, with the carried model."""
    import numpy as np

    from mnist_cnn.cli.demo import Reader

    reader = Reader(None)
    drawn = np.zeros((280, 280, 4), dtype=np.uint8)
    drawn[40:240, 130:150] = (0, 0, 0, 255)
    reader.read({"composite": drawn})  # warm
    took = []
    for _ in range(20):
        start = time.perf_counter()
        reader.read({"composite": drawn})
        took.append(time.perf_counter() - start)
    return statistics.median(took)


if __name__ == "__main__":
    main()
