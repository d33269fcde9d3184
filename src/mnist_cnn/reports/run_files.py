"""What a finished run leaves in its directory: the lab's parts II, III and V as files, and the
same figures in TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_summary import ModelSummary
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator
from torchmetrics.utilities.plot import plot_confusion_matrix

from mnist_cnn.atomic import write_atomically
from mnist_cnn.explain import attributions as explaining
from mnist_cnn.figures import save_figure

log = logging.getLogger(__name__)


def write_json(path: Path, data: dict) -> None:
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def samples_figure(images: torch.Tensor, labels: torch.Tensor | None = None, classes: list[str] | None = None):
    """Part II: the first 200 training images, 10 rows of 20, each under its label where given, as one tiled
    image (200 subplots, as the lab draws it, took seconds). Class names longer than a digit are numbered,
    the numbers named in the title."""
    count = min(200, len(images))
    label = 12 if labels is not None else 0  # pixels above each image for its label
    tiles, corners = tiled(images[:count].cpu().float(), columns=20, cell=(28 + label, 34), at=(label, 3))
    height = 13 * tiles.shape[0] / tiles.shape[1]
    fig, ax = plt.subplots(figsize=(13, height + 0.6), dpi=100)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=height / (height + 0.6))
    show_tiles(ax, tiles)
    named = classes is not None and max(len(c) for c in classes) <= 2
    if labels is not None:
        for (top, left), y in zip(corners, labels[:count].tolist()):
            ax.text(left + 14, top - 1.5, classes[y] if named else str(y), ha="center", va="bottom", fontsize=8)
    key = "" if named or classes is None else ": " + ", ".join(f"{i} {c}" for i, c in enumerate(classes))
    fig.suptitle(
        f"the first {count} training images{' and their labels' if labels is not None else ''}{key}",
        fontsize=10 if key else 12,
    )
    return fig


def tiled(images, columns: int, cell: tuple[int, int], at: tuple[int, int]) -> tuple[torch.Tensor, list]:
    """28x28 images on one canvas, `columns` to a row, each in a cell of (height, width) pixels at offset
    `at` (top, left) within it; the rest of the canvas is NaN (drawn white). Returns the canvas and each
    image's (top, left)."""
    rows = max(1, -(-len(images) // columns))
    tiles = torch.full((rows * cell[0], columns * cell[1]), float("nan"))
    corners = []
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = r * cell[0] + at[0], c * cell[1] + at[1]
        tiles[top : top + 28, left : left + 28] = image
        corners.append((top, left))
    return tiles, corners


def show_tiles(ax, tiles: torch.Tensor) -> None:
    ax.imshow(tiles.numpy(), cmap=plt.get_cmap("gray").with_extremes(bad="white"), interpolation="nearest")
    ax.axis("off")


def learning_curves_figure(history: list[dict]):
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("learning curves")
    return fig


def confusion_figure(report: dict, classes: list[str]):
    """Part V: the test set's confusion matrix, each cell's count written in it, coloured on a logarithmic
    scale with its colour bar: on a linear one the diagonal (about a thousand images a class) takes the whole
    scale and every mistake looks alike. A cell with no image is left white. torchmetrics draws it; the
    counts are written here, in the colour that reads on the new scale."""
    matrix = torch.tensor(report["confusion_matrix"])
    fig, ax = plot_confusion_matrix(
        matrix, add_text=False, labels=[c.replace(" ", "\n").replace("/", "/\n") for c in classes]
    )
    fig.set_size_inches(8.5, 7)
    image = ax.images[0]
    image.set_cmap(plt.get_cmap("viridis").with_extremes(bad="white"))
    image.set_norm(LogNorm(vmin=1, vmax=max(2, int(matrix.max()))))
    for (row, column), count in np.ndenumerate(matrix.numpy()):
        if count:
            red, green, blue, _ = image.cmap(image.norm(count))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(column, row, str(count), ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.tick_params(axis="x", labelrotation=0, labelsize=9)
    ax.tick_params(axis="y", labelrotation=0, labelsize=9)
    fig.colorbar(image, ax=ax, label="test images (logarithmic scale)")
    ax.set_title("test set confusion matrix")
    return fig


def misclassified_figure(mistakes: dict, classes: list[str]):
    """The tested checkpoint's wrong answers, most confident first, 10 to a row, each under its label:
    one tiled image with text on it (one subplot each, 100 of them, took seconds to lay out)."""
    count = len(mistakes["true"])
    two_lines = max(len(c) for c in classes) > 2  # Fashion-MNIST's names
    label = 22 if two_lines else 12  # pixels above each image for its label
    tiles, corners = tiled(mistakes["images"][:count], columns=10, cell=(28 + label, 34), at=(label, 3))
    height = 13 * tiles.shape[0] / tiles.shape[1]
    fig, ax = plt.subplots(figsize=(13, height + 0.6), dpi=100)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=height / (height + 0.6))  # the title just above
    for i, (top, left) in enumerate(corners):
        title = (
            f"{classes[mistakes['true'][i]]} → {classes[mistakes['predicted'][i]]} ({mistakes['probability'][i]:.2f})"
        )
        ax.text(
            left + 14,
            top - 1.5,
            title.replace(" → ", " →\n") if two_lines else title,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    show_tiles(ax, tiles)
    if count == 0:
        fig.text(0.5, 0.5, "no test image was misclassified", ha="center")
    fig.suptitle(f"misclassified test images, most confident first ({count} shown): true → predicted (probability)")
    return fig


def classification_report_text(report: dict) -> str:
    """The layout of the lab's sklearn classification_report."""
    lines = [f"{'':>14}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}", ""]
    row = "{:>14}{:>10.4f}{:>10.4f}{:>10.4f}{:>10d}"
    for label, scores in report["per_class"].items():
        lines.append(row.format(label, scores["precision"], scores["recall"], scores["f1"], scores["support"]))
    lines.append("")
    total = report["macro avg"]["support"]
    confusion = report["confusion_matrix"]
    accuracy = sum(confusion[i][i] for i in range(len(confusion))) / total
    lines.append(f"{'accuracy':>14}{'':>20}{accuracy:>10.4f}{total:>10d}")
    for average in ("macro avg", "weighted avg"):
        s = report[average]
        lines.append(row.format(average, s["precision"], s["recall"], s["f1"], s["support"]))
    return "\n".join(lines) + "\n"


def model_summary_text(model) -> str:
    """Part III's model.summary(): the network's layers, output shapes (N, C, H, W) and parameters."""
    with warnings.catch_warnings():  # about the size in MB under mixed precision, which this table leaves out
        warnings.filterwarnings("ignore", message="Precision .* is not supported by the model summary")
        summary = ModelSummary(model, max_depth=-1)
    rows = [
        (name.removeprefix("net."), kind, str(out).replace("[1,", "[N,", 1), params)
        for name, kind, out, params in zip(
            summary.layer_names, summary.layer_types, summary.out_sizes, summary.param_nums
        )
        if name.startswith("net.")
    ]
    widths = [max(len(r[i]) for r in rows + [("Layer", "Type", "Output Shape", "")]) + 2 for i in range(3)]
    lines = [
        f"{type(model.net).__name__}",
        f"{'Layer':<{widths[0]}}{'Type':<{widths[1]}}{'Output Shape':<{widths[2]}}{'Param #':>12}",
    ]
    lines += [f"{n:<{widths[0]}}{k:<{widths[1]}}{o:<{widths[2]}}{p:>12,}" for n, k, o, p in rows]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
    ]
    return "\n".join(lines) + "\n"


def write_model_summary(out: Path, model) -> None:
    write_atomically(out / "model_summary.txt", model_summary_text(model))


def write_test_report(out: Path, report: dict, classes: list[str]) -> None:
    report = dict(report)
    report["per_class"] = {classes[int(c)]: scores for c, scores in report["per_class"].items()}
    with io.StringIO() as buffer:
        writer = csv.writer(buffer)
        writer.writerow(["true\\predicted", *classes])
        for name, row in zip(classes, report["confusion_matrix"]):
            writer.writerow([name, *row])
        write_atomically(out / "confusion_matrix.csv", buffer.getvalue())
    write_json(out / "classification_report.json", report)
    write_atomically(out / "classification_report.txt", classification_report_text(report))


def distinguishing(metrics: dict) -> dict:
    """The settings that tell runs apart in TensorBoard's HParams table."""
    config = metrics["config"]
    data, trainer, optimizer = config["data"], config["trainer"], config["model"]["optimizer"]
    return {
        "model": metrics["model"],
        "dataset": data["dataset"],
        "batch_size": data["batch_size"],
        "validation_split": data["validation_split"],
        "max_epochs": trainer["max_epochs"],
        "optimizer": optimizer["name"],
        "lr": optimizer["lr"],
        "precision": metrics["precision"],
        "seed": config["seed"],
    }


def write_run(
    out: Path, trainer, model, datamodule, history: list[dict], evaluation, metrics: dict, explain: bool = True
) -> None:
    """Every report file of the run, and the figures and final metrics in TensorBoard; evaluation: the
    run's mnist_cnn.training.evaluation.TestReport, whose report and mistakes are the last test's (report None: no test);
    explain: also what the tested network learned (mnist_cnn.explain.attributions). metrics.json and the test's report
    come first: a figure, the Projector or TensorBoard failing after them is one warning naming it, and the
    run keeps its result."""
    write_json(out / "metrics.json", metrics)
    if evaluation.report is not None:
        write_test_report(out, evaluation.report, datamodule.classes)
    tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    figures = {
        "model_summary.txt": lambda: write_model_summary(out, model),
        "samples": lambda: samples_figure(datamodule.samples, datamodule.sample_labels, datamodule.classes),
    }
    if history:
        figures["learning_curves"] = lambda: learning_curves_figure(history)
    if evaluation.report is not None:
        figures["confusion_matrix"] = lambda: confusion_figure(evaluation.report, datamodule.classes)
        figures["misclassified"] = lambda: misclassified_figure(evaluation.mistakes, datamodule.classes)
    explain = explain and evaluation.report is not None  # what the tested network learned
    if explain:
        figures["filters, feature_maps, attributions"] = lambda: explaining.run_figures(
            model.net,
            datamodule.x_test,
            datamodule.y_test,
            evaluation.mistakes,
            datamodule.classes,
            datamodule.background(),
        )
    for name, draw in figures.items():
        with afterwards(name):
            drawn = draw()
            for title, fig in (drawn if isinstance(drawn, dict) else {name: drawn} if drawn else {}).items():
                png = save_figure(fig, out / f"{title}.png")
                if tensorboard is not None:
                    tensorboard.experiment.add_image(
                        title, plt.imread(io.BytesIO(png), format="png"), trainer.global_step, dataformats="HWC"
                    )
    if tensorboard is None:
        return
    if explain:
        with afterwards("the Projector's embedding"):
            explaining.write_projector(
                tensorboard.experiment,
                model.net,
                datamodule.x_test,
                datamodule.y_test,
                datamodule.classes,
                trainer.global_step,
            )
    with afterwards("TensorBoard's HParams"):
        final = {
            f"hp/{k}": metrics[k]
            for k in ("test_acc", "test_loss", "best_val_acc", "best_val_loss")
            if metrics.get(k) is not None
        }
        tensorboard.log_hyperparams(distinguishing(metrics), metrics=final)
        tensorboard.experiment.close()  # the run's one event file, complete


@contextmanager
def afterwards(what: str) -> Iterator[None]:
    """A part of a run's record written after its result: its failure is a warning naming it, never the run's."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 -- whatever it is, the run's result is already written
        reason = " ".join(str(exc).split())[:300]
        log.warning(
            "%s not written: %s: %s (the run's result is kept in metrics.json)", what, type(exc).__name__, reason
        )
