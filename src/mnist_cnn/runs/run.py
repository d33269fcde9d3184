"""One training run as an object: built once from its composed config (its folder, overrides, data
module, model, trainer and callbacks), then fitted and tested; `fit_and_test` returns a typed result,
from which metrics.json, the report files and the trackers are written."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_cnn.config.checks import native_precision
from mnist_cnn.models.classifier import Classifier
from mnist_cnn.reports import run_files as artifacts
from mnist_cnn.runs.build import built, model_of
from mnist_cnn.runs.provenance import provenance
from mnist_cnn.runs.stages import Stages
from mnist_cnn.tracking import mlflow_run as tracking
from mnist_cnn.training.checkpoints import background_checkpoint_io, newest_checkpoint
from mnist_cnn.training.epoch_readings import BestAtEpochs, read_epochs
from mnist_cnn.training.evaluation import TestReport
from mnist_cnn.training.history import History
from mnist_cnn.training.resume_state import ResumeState

log = logging.getLogger(__name__)


@dataclass
class Tested:
    """What the run's test used and gave: the epoch validation chose, its checkpoint, the test's figures
    ({} with test=false), and the run's TestReport (its report and mistakes)."""

    best: dict
    best_path: str
    monitor: str | None
    test: dict
    evaluation: TestReport


@dataclass
class Run:
    """A run as its config builds it. `folder` and `overrides` are Hydra's for this job."""

    cfg: DictConfig
    datamodule: L.LightningDataModule
    model: Classifier
    trainer: L.Trainer
    history: History
    evaluation: TestReport
    readings: BestAtEpochs | None
    stages: Stages
    folder: Path = field(default_factory=lambda: Path(HydraConfig.get().runtime.output_dir))
    overrides: list[str] = field(default_factory=lambda: list(HydraConfig.get().overrides.task))

    @classmethod
    def build(cls, cfg: DictConfig, extra_callbacks: tuple = ()) -> Run:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        # Deterministic algorithms also fill every new tensor with NaN, to expose reads of unwritten memory: a
        # debugging aid, not part of determinism, that adds a kernel per allocation to each GPU step.
        torch.utils.deterministic.fill_uninitialized_memory = False
        datamodule = built("data", cfg.data, _convert_="all")  # plain containers in hparams and checkpoints
        model = model_of(cfg.model, cfg.data.dataset)
        readings = BestAtEpochs(cfg.read_epochs) if cfg.read_epochs else None
        history, evaluation, stages = History(), TestReport(), Stages()
        callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
        callbacks += [
            *trial_pruning(),
            ResumeState(),
            history,
            evaluation,
            *([readings] if readings else []),
            stages,
            *extra_callbacks,
        ]
        loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
        trainer = built(
            "trainer",
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[background_checkpoint_io()],
            precision=native_precision(cfg.trainer.precision, cfg.trainer.accelerator),
        )
        return cls(cfg, datamodule, model, trainer, history, evaluation, readings, stages)

    @property
    def network(self) -> str:
        return type(self.model.net).__name__

    @property
    def trackers(self) -> list[tracking.RunMLFlowLogger]:
        return [lg for lg in self.trainer.loggers if isinstance(lg, tracking.RunMLFlowLogger)]

    def checkpoint_dir(self) -> Path | None:
        return checkpoint_dir(self.cfg)

    def resume_point(self) -> Path | None:
        """The checkpoint to continue from: the newest in the run's folder, with resume=, or when a multirun
        job finds checkpoints in its own folder, because it was requeued (SLURM: time limit, preemption)."""
        checkpoints = self.checkpoint_dir()
        requeued = HydraConfig.get().mode == RunMode.MULTIRUN and checkpoints is not None and checkpoints.is_dir()
        if not (self.cfg.resume or requeued):
            return None
        resume_from = newest_checkpoint(checkpoints) if checkpoints is not None else None
        log.info("resuming from %s", resume_from or "nothing: no checkpoint yet, starting afresh")
        return resume_from

    def fit_and_test(self) -> tuple[dict, Tested]:
        """Fit (or resume), test the checkpoint validation chose: metrics.json's content, and what was tested."""
        trainer, model = self.trainer, self.model
        code = provenance()  # now, before training: the checkout may change while a long run goes on
        resume_from = self.resume_point()
        if trainer.is_global_zero:
            log.info(
                "Model: %s, %s parameters; %s, precision %s",
                self.network,
                f"{sum(p.numel() for p in model.parameters()):,}",
                device_words(trainer),
                trainer.precision,
            )
        for tracker in self.trackers:
            config = OmegaConf.to_container(self.cfg, resolve=True)
            tracker.describe(
                artifacts.distinguishing(
                    {"model": self.network, "precision": str(trainer.precision), "config": config}
                ),
                OmegaConf.to_yaml(config),
                code["git_commit"],
            )
        with warnings.catch_warnings():
            if resume_from is not None:  # a resumed run continues in its own folder, which holds its checkpoints
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            trainer.fit(model, datamodule=self.datamodule, ckpt_path=resume_from)
        fit_seconds = self.stages.fit_ended()
        # Copied now: testing from a checkpoint restores callback states too, History's included, which
        # would cut its list back to the epochs the best checkpoint had seen.
        epochs, steps = list(self.history.epochs), list(self.history.steps)
        with self.stages.stage("test", self.testing_line(epochs)):
            read = (
                read_epochs(trainer, model, self.datamodule, self.readings, epochs, self.cfg.test)
                if self.readings
                else None
            )
            tested = self.test_best(epochs, weights_in_memory_may_be_best=self.readings is None)
        return {**self.metrics(epochs, tested, fit_seconds, code, read), "steps": steps}, tested

    def testing_line(self, epochs: list[dict]) -> str | None:
        """The console's line as the test starts: what is tested, on how many images."""
        if not self.cfg.test or self.trainer.fast_dev_run:
            return None
        best = tested_epoch(epochs, self.trainer.checkpoint_callback)
        which = f"epoch {best['epoch']}'s checkpoint" if best.get("epoch") else "the final weights"
        limit = self.trainer.limit_test_batches
        whole = isinstance(limit, float) and limit == 1.0  # an int is a number of batches
        return f"Testing {which} on {f'the {len(self.datamodule.y_test):,}' if whole else 'some of the'} test images"

    def test_best(self, epochs: list[dict], weights_in_memory_may_be_best: bool) -> Tested:
        checkpoint = self.trainer.checkpoint_callback
        best_path = checkpoint.best_model_path if checkpoint is not None else ""
        best = tested_epoch(epochs, checkpoint)
        # The best checkpoint of the last epoch holds the weights still in memory (unless readings loaded others):
        # test those rather than read the file back.
        in_memory = weights_in_memory_may_be_best and bool(epochs) and best.get("epoch") == epochs[-1]["epoch"]
        ckpt_path = None if in_memory else best_path or None
        test = (
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path, verbose=False)[0]
            if self.cfg.test
            else {}
        )
        return Tested(best, best_path, checkpoint.monitor if checkpoint is not None else None, test, self.evaluation)

    def metrics(self, epochs: list[dict], tested: Tested, fit_seconds: float, code: dict, read: dict | None) -> dict:
        """metrics.json of a finished run: what the sweep report, TensorBoard's HParams and a resume read."""
        train_seconds = sum(e["train_seconds"] for e in epochs)
        test, best = tested.test, tested.best
        return {
            "status": "ok",
            "overrides": self.overrides,
            "model": self.network,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "test_acc": test.get("test_acc"),
            "test_loss": test.get("test_loss"),
            "best_val_acc": best.get("val_acc"),
            "best_val_loss": best.get("val_loss"),
            "best_epoch": best.get("epoch"),
            "best_checkpoint": tested.best_path,
            "misclassified_shown": len(tested.evaluation.mistakes["true"]) if test else None,  # misclassified.png's
            "epochs": len(epochs),
            "fit_seconds": fit_seconds,
            "stages": self.stages.record(),  # so far; the finished run's, once its files are written
            "train_samples_per_second": sum(e["train_samples"] for e in epochs) / train_seconds
            if train_seconds
            else None,
            "device": str(self.trainer.strategy.root_device),
            "precision": str(self.trainer.precision),
            "data_sha256": self.datamodule.file_sha256,
            "provenance": code,
            "history": epochs,
            # read_epochs: {k: what a k-epoch run would report}, read from this run (see mnist_cnn.training.epoch_readings)
            **({"read_at_epochs": read} if read is not None else {}),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def write(self, metrics: dict, tested: Tested) -> None:
        """The run's report files, the trackers' record of it, and metrics.json again with every stage's seconds."""
        artifacts.write_run(
            self.folder,
            self.trainer,
            self.model,
            self.datamodule,
            metrics["history"],
            tested.evaluation,
            metrics,
            figures=self.cfg.figures,
            explain=self.cfg.explain and not self.trainer.fast_dev_run,  # a smoke run's network learned nothing
            stage=self.stages.stage,
        )
        trackers = [*(t for t in self.trackers if t.where()), *artifacts.tensorboard_of(self.trainer)]
        if trackers:  # metrics.json as the trackers will keep it: every stage but theirs
            with artifacts.afterwards("metrics.json's stage timings"):
                artifacts.write_json(self.folder / "metrics.json", {**metrics, "stages": self.stages.record()})
            with self.stages.stage("tracking", f"Recording the run: {', '.join(tracker_name(t) for t in trackers)}"):
                artifacts.write_hparams(self.trainer, metrics)
                for tracker in self.trackers:
                    tracker.finish(metrics, tested.best_path or None, self.trainer.global_step)
        with artifacts.afterwards("metrics.json's stage timings"):
            artifacts.write_json(self.folder / "metrics.json", {**metrics, "stages": self.stages.record()})


def tracker_name(logger) -> str:
    return "MLflow" if isinstance(logger, tracking.RunMLFlowLogger) else "TensorBoard's HParams"


def in_search() -> bool:
    """Whether this job is a trial of hparams_search=optuna's study."""
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN and str(hydra.sweeper.get("_target_")).endswith(".StudySweeper")


def trial_pruning() -> list:
    """A search's trial reports its validation accuracy to the study and stops where the pruner says
    (mnist_cnn.search.pruning); any other run, nothing."""
    if not in_search():
        return []
    hydra = HydraConfig.get()
    from mnist_cnn.search.pruning import TrialPruning
    from mnist_cnn.search.study import storage_url

    url = storage_url(hydra.sweeper.storage, hydra.sweep.dir)
    pruner = instantiate(hydra.sweeper.pruner) if hydra.sweeper.get("pruner") else None
    return [TrialPruning(hydra.sweeper.study_name, url, hydra.job.num, pruner)]


def checkpoint_dir(cfg: DictConfig) -> Path | None:
    """Where the run's checkpoints are: the checkpoint callback's dirpath, the one source for resume,
    requeue and the interruption record. None without a checkpoint callback."""
    checkpoint = (cfg.callbacks or {}).get("checkpoint")
    return Path(checkpoint.dirpath) if checkpoint is not None and checkpoint.get("dirpath") else None


def device_words(trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}" + (
            f" x {trainer.world_size}" if trainer.world_size > 1 else ""
        )
    return f"CPU, {torch.get_num_threads()} threads" + (
        f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
    )


def tested_epoch(epochs: list[dict], checkpoint) -> dict:
    """The history entry of the epoch whose checkpoint is tested: by the checkpoint callback's monitor
    and mode (val_acc, max, by default), the first of equals, as ModelCheckpoint keeps the first."""
    monitor, mode = (
        (checkpoint.monitor, checkpoint.mode) if checkpoint is not None and checkpoint.monitor else ("val_acc", "max")
    )
    scored = [e for e in epochs if e.get(monitor) is not None]
    return (min if mode == "min" else max)(scored, key=lambda e: e[monitor], default={})
