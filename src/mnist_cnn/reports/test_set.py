"""mnist-test: a checkpoint, a run, or several of them as an ensemble, scored on its dataset's test set, with the
report a run writes for its own test: accuracy, the classification report, the confusion matrix and the most
confident mistakes.

    mnist-test outputs/multirun/2026-12-07_21-03-18                # its jobs' networks, averaged
    mnist-test outputs/runs/a outputs/runs/b --out ensemble-ab

Lightning's Trainer runs the test, with the run's own TestReport callback: the same numbers as a run's."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch import nn

from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.data.module import MNISTDataModule
from mnist_cnn.figures import save_figure
from mnist_cnn.inference.ensemble import load_models, members_of
from mnist_cnn.reports.run_figures import confusion_figure, misclassified_figure
from mnist_cnn.reports.run_files import write_json, write_test_report
from mnist_cnn.training.evaluation import TestReport


class Tested(L.LightningModule):
    """A trained network (or ensemble) under test: its logits for TestReport."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def test_step(self, batch, batch_idx):
        return self.net(batch[0])


def default_out(members: list[Path]) -> Path:
    """One run folder: its test/. Several: test-<their names> in their common folder (a multirun's jobs 0, 1 and 2:
    <multirun>/test-0+1+2). Checkpoint files: test-<their names> here, never beside a file that may be anywhere
    (the package's own)."""
    if len(members) == 1 and members[0].is_dir():
        return members[0] / "test"
    name = ("test-" + "+".join(m.stem for m in members))[:120]
    if all(m.is_dir() for m in members):
        return Path(os.path.commonpath([m.resolve() for m in members])) / name
    return Path(name)


def main(args) -> None:
    """mnist-test, its command line read (mnist_cnn.cli.commands)."""
    members = members_of(args.ckpts)
    net, data = load_models(members)
    out = Path(args.out) if args.out else default_out(members)
    datamodule = MNISTDataModule(data_dir=args.data_dir, dataset=data["dataset"], normalize=data["normalize"],
                                 eval_batch_size=1000)  # fmt: skip
    report = TestReport()
    for name in ("lightning.pytorch", "lightning.fabric"):  # "GPU available: ...": not what was asked
        logging.getLogger(name).setLevel(logging.WARNING)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, callbacks=[report], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.test(Tested(net), datamodule=datamodule, verbose=False)
    confusion = torch.tensor(report.report["confusion_matrix"])
    accuracy = confusion.trace().item() / confusion.sum().item()
    classes = DATASETS[data["dataset"]].classes
    origins = data["origin"].get("members") or [data["origin"]]
    scored = {
        "test_acc": accuracy,
        "test_images": int(confusion.sum()),
        "mistakes": int(confusion.sum() - confusion.trace()),
        "dataset": data["dataset"],
        "members": [
            {"given": str(path), "run": o.get("run"), "commit": o.get("commit"), "test_acc": o.get("test_acc")}
            for path, o in zip(members, origins)
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_test_report(out, report.report, list(classes))
    save_figure(confusion_figure(report.report, list(classes)), out / "confusion_matrix.png")
    save_figure(misclassified_figure(report.mistakes, list(classes)), out / "misclassified.png")
    write_json(out / "test.json", scored)
    alone = [m["test_acc"] for m in scored["members"] if m["test_acc"] is not None]
    what = f"Ensemble of {len(members)}" if len(members) > 1 else str(members[0])
    print(f"{what}: test accuracy {accuracy:.4f} ({scored['mistakes']} of {scored['test_images']:,} wrong)")
    if len(members) > 1 and alone:
        print(f"Its networks alone (their runs' tests): {', '.join(f'{a:.4f}' for a in alone)}")
    print(f"Report: {out} (test.json, classification_report.txt, confusion_matrix.png, misclassified.png)")
