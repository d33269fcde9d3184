"""What a finished run leaves in its directory: the lab's parts II, III and V as files, and the
same figures in TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import logging
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import matplotlib.pyplot as plt
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_summary import ModelSummary

from mnist_cnn.atomic import write_atomically
from mnist_cnn.explain import attributions as explaining
from mnist_cnn.figures import save_figure
from mnist_cnn.reports.run_figures import confusion_figure, learning_curves_figure, misclassified_figure, samples_figure
from mnist_cnn.tracking.tensorboard import RunTensorBoardLogger

log = logging.getLogger(__name__)


def write_json(path: Path, data: dict) -> None:
    write_atomically(path, json.dumps(data, indent=2) + "\n")


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
    out: Path,
    trainer,
    model,
    datamodule,
    history: list[dict],
    evaluation,
    metrics: dict,
    figures: bool = True,
    explain: bool = True,
    stage: Callable[[str, str], ContextManager] = lambda name, saying: nullcontext(),
) -> None:
    """Every report file of the run, and its figures in TensorBoard; evaluation: the run's
    mnist_cnn.training.evaluation.TestReport, whose report and mistakes are the last test's (report None: no test);
    figures: the lab's figures of the run (mnist_cnn.reports.run_figures); explain: also what the tested network learned (mnist_cnn.explain.attributions); stage(name, saying): times a
    stage (mnist_cnn.runs.stages). metrics.json and the test's report come first: a figure or the Projector failing
    after them is one warning naming it, and the run keeps its result."""
    write_json(out / "metrics.json", metrics)
    if evaluation.report is not None:
        write_test_report(out, evaluation.report, datamodule.classes)
    tensorboard = next(iter(tensorboard_of(trainer)), None)

    def save(name: str, draw: Callable) -> None:
        with afterwards(name):
            drawn = draw()
            for title, fig in (drawn if isinstance(drawn, dict) else {name: drawn} if drawn else {}).items():
                png = save_figure(fig, out / f"{title}.png")
                if isinstance(tensorboard, RunTensorBoardLogger):
                    tensorboard.log_png(title, png, trainer.global_step)
                elif tensorboard is not None:
                    tensorboard.experiment.add_image(
                        title, plt.imread(io.BytesIO(png), format="png"), trainer.global_step, dataformats="HWC"
                    )

    save("model_summary.txt", lambda: write_model_summary(out, model))
    drawn = {"samples": lambda: samples_figure(datamodule.samples, datamodule.sample_labels, datamodule.classes)}
    if history:
        drawn["learning_curves"] = lambda: learning_curves_figure(history, metrics.get("steps"))
    if evaluation.report is not None:
        drawn["confusion_matrix"] = lambda: confusion_figure(evaluation.report, datamodule.classes)
        drawn["misclassified"] = lambda: misclassified_figure(evaluation.mistakes, datamodule.classes)
    if figures:
        with stage("figures", f"Drawing the figures: {', '.join(n.replace('_', ' ') for n in drawn)}"):
            for name, draw in drawn.items():
                save(name, draw)
    if not (explain and evaluation.report is not None):  # what the tested network learned
        return
    projector = " and the Projector's embedding" if tensorboard is not None else ""
    with stage("explanations", f"Explaining the network: filters, feature maps, attributions{projector}"):
        save(
            "filters, feature_maps, attributions",
            lambda: explaining.run_figures(
                model.net,
                datamodule.x_test,
                datamodule.y_test,
                evaluation.mistakes,
                datamodule.classes,
                datamodule.background(),
            ),
        )
        if tensorboard is not None:
            with afterwards("the Projector's embedding"):
                explaining.write_projector(
                    tensorboard.experiment,
                    model.net,
                    datamodule.x_test,
                    datamodule.y_test,
                    datamodule.classes,
                    trainer.global_step,
                )


def tensorboard_of(trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def write_hparams(trainer, metrics: dict) -> None:
    """The run's settings and final figures in TensorBoard's HParams, and its event file closed, complete."""
    for tensorboard in tensorboard_of(trainer):
        with afterwards("TensorBoard's HParams"):
            final = {
                f"hp/{k}": metrics[k]
                for k in ("test_acc", "test_loss", "best_val_acc", "best_val_loss")
                if metrics.get(k) is not None
            }
            tensorboard.log_hyperparams(distinguishing(metrics), metrics=final)
            tensorboard.experiment.close()


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
