"""Train one of the seed's CNNs on MNIST, then test the best checkpoint on the official test set.

    python train.py                                  # the seed's first run (experiment=seed_baseline)
    python train.py experiment=seed_elu trainer.accelerator=gpu
    python train.py -m data.batch_size=16,32,64      # one job per value, each from scratch
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_cnn import artifacts
from mnist_cnn.data import NORMALIZE, SPLITS
from mnist_cnn.history import History
from mnist_cnn.mnist_files import MNISTUnavailable
from mnist_cnn.report import SweepReport

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


class ConfigError(ValueError):
    """A config value that is not allowed; its message is the one line the user sees."""


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
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer, history


def fit_and_test(cfg: DictConfig) -> dict:
    out = Path(HydraConfig.get().runtime.output_dir)
    datamodule, model, trainer, history = build(cfg)

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start

    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    test = trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None)[0] if cfg.test else {}

    epochs = history.epochs
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
    log.error("job failed: %s", reason, exc_info=not isinstance(exc, (ConfigError, MNISTUnavailable)))
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
        if multirun:  # one bad job must not stop the others
            record_failure(cfg, exc)
            return None
        if isinstance(exc, (ConfigError, MNISTUnavailable)):
            exit_with(exc)  # SystemExit passes Hydra's job wrapper, which would add lines of its own
        raise


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut to the line that names key and value."""
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not a known option: expected one of {', '.join(exc.options)}"
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the override {exc.override!r}: {' '.join(exc.message.split())}"
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException) and "not in struct" in str(cause):
        key = getattr(cause, "full_key", None) or str(cause).splitlines()[0]
        parent = key.rpartition(".")[0] or "the top level"
        return f"{key} is not a known key (check its spelling under {parent}; add new keys with +{key}=...)"
    text = str(exc) or (f"{type(cause).__name__}: {cause}" if cause else type(exc).__name__)
    return " ".join(text.split())


def exit_with(exc: BaseException) -> None:
    print(f"mnist-train: error: {one_line(exc)}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    """Console entry point: bad input ends in one line on stderr and exit status 2."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let Hydra's errors reach us unprinted
    try:
        run()
    except (HydraException, OmegaConfBaseException) as exc:  # composing the config failed
        exit_with(exc)
    if SweepReport.failures:
        print(f"mnist-train: {SweepReport.failures[-1]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
