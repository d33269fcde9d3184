"""What the figures of what a network learned add to a run: mnist_cnn.explain.attributions.run_figures (filters, feature
maps, Integrated Gradients for 20 digits) and write_projector (2,000 test digits' last hidden layer), timed
on a run's network and the real test set, median of --rounds: benchmarks/results/cpu-<date>-run-figures.json.

    python -m benchmarks.run_figures outputs/runs/<run> [--rounds 3]
"""

from __future__ import annotations

import statistics
import tempfile
import time

import matplotlib.pyplot as plt
import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.datasets import MNIST

from benchmarks.common import parsed, parser, save_results
from mnist_cnn.data.datasets import DATASETS, blank_level, normalize
from mnist_cnn.explain.attributions import run_figures, write_projector
from mnist_cnn.figures import save_figure
from mnist_cnn.inference.loader import load_network


def main() -> None:
    p = parser(__doc__)
    p.add_argument("run", help="a finished run (MNIST)")
    p.add_argument("--rounds", type=int, default=3)
    args = parsed(p)
    net, data = load_network(args.run)
    test = MNIST(args.data_dir, train=False)
    x, y = normalize(test.data, data["normalize"]), test.targets
    with torch.no_grad():
        read = torch.cat([net(b).argmax(dim=1) for b in x.split(2000)])
    wrong = (read != y).nonzero().flatten()[:10]
    mistakes = {
        "images": x[wrong, 0],
        "true": y[wrong].tolist(),
        "predicted": read[wrong].tolist(),
        "probability": [1.0] * len(wrong),
    }
    classes = list(DATASETS[data["dataset"]].classes)
    figures, projector = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            start = time.perf_counter()
            for name, fig in run_figures(net, x, y, mistakes, classes, blank_level(data["normalize"])).items():
                save_figure(fig, f"{tmp}/{name}.png")
            figures.append(time.perf_counter() - start)
            start = time.perf_counter()
            writer = SummaryWriter(f"{tmp}/tb")
            write_projector(writer, net, x, y, classes, 0)
            writer.close()
            projector.append(time.perf_counter() - start)
    plt.close("all")
    record = {
        "run": args.run,
        "rounds": args.rounds,
        "figures_seconds": figures,
        "projector_seconds": projector,
        "median_seconds": statistics.median(figures) + statistics.median(projector),
    }
    print(f"figures {statistics.median(figures):.2f} s, projector {statistics.median(projector):.2f} s")
    save_results(args, torch.device("cpu"), "run-figures", record)


if __name__ == "__main__":
    main()
