"""What a test leaves for the run's report files: the lab's classification report and confusion matrix
(part V), and the test images wrongly classified with the highest confidence. A callback beside History,
fed by each test step's logits: the LightningModule keeps only steps, loss, metrics and the optimiser."""

from __future__ import annotations

import lightning as L
import torch
import torchmetrics

MISTAKES_KEPT = 100  # the test images wrongly classified with the highest confidence


class TestReport(L.Callback):
    """The test's report: per-class precision, recall and F1, the confusion matrix, and the most confident
    mistakes, from the test step's logits."""

    __test__ = False  # a Lightning callback, not a class of pytest's

    def __init__(self) -> None:
        self.report: dict | None = None  # the last test's, as classification_report.json holds it
        self.mistakes: dict | None = None  # the last test's, as misclassified.png shows them

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        # validate_args off: torchmetrics' checks run torch.unique on every batch, a host-device sync per step
        metric = dict(task="multiclass", num_classes=len(trainer.datamodule.classes), validate_args=False)
        self.confusion = torchmetrics.ConfusionMatrix(**metric).to(pl_module.device)
        self.per_class = torchmetrics.MetricCollection(
            {
                f"{name}_{average}": cls(**metric, average=average)
                for name, cls in (
                    ("precision", torchmetrics.Precision),
                    ("recall", torchmetrics.Recall),
                    ("f1", torchmetrics.F1Score),
                )
                for average in ("none", "macro", "weighted")
            }
        ).to(pl_module.device)
        self.kept = None

    def on_test_batch_end(self, trainer, pl_module, logits, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch
        self.confusion.update(logits, y)
        self.per_class.update(logits, y)
        self.keep_mistakes(x, y, logits)

    def keep_mistakes(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        """The most confident wrong predictions so far, at most MISTAKES_KEPT. Fixed-size top-k on the
        device, with right answers scored -1, so that no step waits for the host to count mistakes."""
        probability, predicted = logits.detach().float().softmax(dim=1).max(dim=1)
        score = torch.where(predicted != y, probability, torch.full_like(probability, -1.0))
        batch = (score, x, y, predicted)
        kept = batch if self.kept is None else tuple(torch.cat(p) for p in zip(self.kept, batch))
        top = kept[0].topk(min(MISTAKES_KEPT, len(kept[0]))).indices
        self.kept = tuple(t.index_select(0, top) for t in kept)

    def mistakes_found(self, pl_module=None) -> dict:
        score, x, y, predicted = self.kept
        if pl_module is not None and pl_module.trainer.world_size > 1:  # each rank tested its own share
            score, x, y, predicted = (t.flatten(0, 1) for t in pl_module.all_gather((score, x, y, predicted)))
        top = score.topk(min(MISTAKES_KEPT, len(score))).indices
        top = top[score[top] >= 0].cpu()
        score, x, y, predicted = (t.cpu()[top] for t in (score, x, y, predicted))
        return {
            "images": x[:, 0].float(),
            "true": y.tolist(),
            "predicted": predicted.tolist(),
            "probability": score.tolist(),
        }

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        confusion = self.confusion.compute()
        scores = {k: v.tolist() for k, v in self.per_class.compute().items()}
        support = confusion.sum(dim=1).tolist()
        self.report = {
            "confusion_matrix": confusion.tolist(),
            "per_class": {
                str(c): {
                    "precision": scores["precision_none"][c],
                    "recall": scores["recall_none"][c],
                    "f1": scores["f1_none"][c],
                    "support": support[c],
                }
                for c in range(len(support))
            },
            **{
                f"{average} avg": {
                    "precision": scores[f"precision_{average}"],
                    "recall": scores[f"recall_{average}"],
                    "f1": scores[f"f1_{average}"],
                    "support": sum(support),
                }
                for average in ("macro", "weighted")
            },
        }
        self.mistakes = self.mistakes_found(pl_module)
        del self.confusion, self.per_class, self.kept  # device memory, until the next test
