"""Train one of the seed's CNNs on MNIST, then test the best checkpoint on the official test set.

    python train.py                                  # the seed's first run (experiment=seed_baseline)
    python train.py experiment=seed_elu trainer.accelerator=gpu
    python train.py -m data.batch_size=16,32,64      # one job per value, each from scratch
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import artifacts
from mnist_cnn.checkpoints import AtomicCheckpointIO, newest_checkpoint
from mnist_cnn.cli import UserError, exit_with, one_line, run_hydra
from mnist_cnn.data import NORMALIZE, SPLITS
from mnist_cnn.history import History
from mnist_cnn.mnist_files import MNISTUnavailable
from mnist_cnn.report import SweepReport

log = logging.getLogger(__name__)
PROG = "mnist-train"
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


class ConfigError(UserError):
    """A config value that is not allowed."""


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


# key -> (test, what is allowed). Checked before any download or training.
RULES = {
    "data.validation_split": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1,
                              "a number strictly between 0 and 1"),
    "data.batch_size": (_is_count, "an integer >= 1"),
    "data.eval_batch_size": (lambda v: v is None or _is_count(v), "null or an integer >= 1"),
    "data.normalize": (lambda v: v in NORMALIZE, "one of " + ", ".join(NORMALIZE)),
    "data.split": (lambda v: v in SPLITS, "one of " + ", ".join(SPLITS)),
    "trainer.max_epochs": (_is_count, "an integer >= 1"),
    "model.optimizer.name": (lambda v: isinstance(getattr(torch.optim, str(v), None), type),
                             "a torch.optim class name such as Adadelta, SGD, Adam"),
}


def check_config(cfg: DictConfig) -> None:
    for key, (ok, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")


def build(cfg: DictConfig, extra_callbacks: tuple = ()) -> tuple:
    """The data module, model, trainer and history of a run, as its config says."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _convert_="all")  # plain containers in hparams and checkpoints
    history = History()
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()] + [history, *extra_callbacks]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()])
    return datamodule, model, trainer, history


def provenance() -> dict:
    """Library versions and the git commit of the code that ran, with a flag for local edits."""
    versions = {name: importlib.metadata.version(name)
                for name in ("torch", "torchvision", "lightning", "torchmetrics", "hydra-core")}
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an installed copy)
        commit, dirty = None, None
    return {"python": platform.python_version(), **versions, "git_commit": commit, "git_dirty": dirty}


def fit_and_test(cfg: DictConfig) -> dict:
    out = Path(HydraConfig.get().runtime.output_dir)
    datamodule, model, trainer, history = build(cfg)
    code = provenance()  # now, before training: the checkout may change while a long run goes on

    resume_from = newest_checkpoint(cfg.resume) if cfg.resume else None
    if cfg.resume:
        log.info("resuming from %s", resume_from or "nothing: no checkpoint yet, starting afresh")
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    fit_seconds = time.perf_counter() - start
    # Copied now: testing from a checkpoint restores callback states too, History's included, which
    # would cut its list back to the epochs the best checkpoint had seen.
    epochs = list(history.epochs)

    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    test = trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None)[0] if cfg.test else {}

    best = max(epochs, key=lambda e: e["val_acc"] if e["val_acc"] is not None else -1.0, default={})
    train_seconds = sum(e["train_seconds"] for e in epochs)
    metrics = {
        "status": "ok",
        "overrides": list(HydraConfig.get().overrides.task),
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_acc": test.get("test_acc"),
        "test_loss": test.get("test_loss"),
        "best_val_acc": best.get("val_acc"),
        "best_val_loss": best.get("val_loss"),
        "best_epoch": best.get("epoch"),
        "best_checkpoint": best_path,
        "epochs": len(epochs),
        "fit_seconds": fit_seconds,
        "train_samples_per_second": sum(e["train_samples"] for e in epochs) / train_seconds if train_seconds else None,
        "device": str(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "data_sha256": datamodule.file_sha256,
        "provenance": code,
        "history": epochs,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if trainer.is_global_zero:
        artifacts.write_run(out, trainer, model, datamodule, epochs, metrics)
        if test:
            print(f"Test loss: {test['test_loss']:.4f}\nTest accuracy: {test['test_acc']:.4f}")
        print(f"Run directory: {out}")
    return metrics


def record_failure(cfg: DictConfig, exc: BaseException) -> None:
    """A multirun job that fails leaves metrics.json saying why, for the sweep report."""
    reason = f"{type(exc).__name__}: {one_line(exc)}"
    log.error("job failed: %s", reason, exc_info=not isinstance(exc, (UserError, MNISTUnavailable)))
    hydra_cfg = HydraConfig.get()
    artifacts.write_json(Path(hydra_cfg.runtime.output_dir) / "metrics.json", {
        "status": "failed", "reason": reason, "overrides": list(hydra_cfg.overrides.task),
        "config": OmegaConf.to_container(cfg, resolve=False),
    })


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def run(cfg: DictConfig) -> float | None:
    """Returns the best validation accuracy: the value an optimising sweeper maximises."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        check_config(cfg)
        return fit_and_test(cfg)["best_val_acc"]
    except Exception as exc:
        record_failure(cfg, exc)
        if multirun:  # one bad job must not stop the others
            return None
        if isinstance(exc, (UserError, MNISTUnavailable, FloatingPointError)):
            exit_with(PROG, exc)  # SystemExit passes Hydra's job wrapper, which would add lines of its own
        raise


def main() -> None:
    # A resumed run continues in its own directory, unless told otherwise.
    resume = next((a.partition("=")[2] for a in sys.argv[1:] if a.startswith("resume=")), None)
    if resume and not any(a.startswith("hydra.run.dir=") for a in sys.argv[1:]):
        sys.argv.append(f"hydra.run.dir={resume}")
    run_hydra(PROG, run)
    if SweepReport.failures:
        print(f"{PROG}: {SweepReport.failures[-1]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
