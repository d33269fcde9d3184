"""Train one of the lab's CNNs on MNIST, then test the best checkpoint on the official test set.

    python train.py                                  # the lab's first run (the groups' defaults)
    python train.py experiment=lab_elu trainer.accelerator=gpu
    python train.py -m data.batch_size=16,32,64      # one job per value, each from scratch
    python train.py resume=outputs/runs/<run>        # continue a run with its own overrides
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import shlex
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import artifacts, tracking, tracking_store, usage
from mnist_cnn.atomic import write_atomically
from mnist_cnn.checkpoints import background_checkpoint_io, newest_checkpoint
from mnist_cnn.cli import CONFIG_PATH, UserError, exit_with, one_line, run_hydra, split_args
from mnist_cnn.config import ConfigError, check_train, native_precision
from mnist_cnn.epoch_readings import BestAtEpochs, read_epochs
from mnist_cnn.evaluation import Evaluation
from mnist_cnn.history import History
from mnist_cnn.interrupt import Interrupted, Interruptible
from mnist_cnn.mnist_files import MNISTUnavailable
from mnist_cnn.overrides import check_overrides
from mnist_cnn.resume import Finished, finished_metrics, resume_overrides
from mnist_cnn.run_folder import check_given

log = logging.getLogger(__name__)
PROG = "mnist-train"
# Lightning warns, with its file and line, when an epoch has fewer batches than trainer.log_every_n_steps
# (a quick run with trainer.limit_train_batches): the epoch's figures are logged all the same, and the
# step loss at the interval the key sets, across epochs.
warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval")


def built(group: str, node: DictConfig, **kwargs):
    """A group's object. A value that passed the schema can still be refused by the class it builds
    (a kernel larger than the image): one line naming the group, and for a model its layer sizes. A
    TypeError (an argument the class does not take) is a bug in the schema or the class, and shows as one."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if not isinstance(cause, (ValueError, RuntimeError)):
            raise
        reason = " ".join(str(cause).split())
        if group == "model":
            sizes = ", ".join(f"model.{k}={v}" for k, v in node.items() if "kernel" in k or "pool" in k)
            raise ConfigError(f"model: {node._target_.rpartition('.')[2]} cannot be built with {sizes}: {reason}") from None
        raise ConfigError(f"{group}: {reason}") from None


def build(cfg: DictConfig, extra_callbacks: tuple = ()) -> tuple:
    """The data module, model, trainer, history and evaluation of a run, as its config says."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Deterministic algorithms also fill every new tensor with NaN, to expose reads of unwritten memory: a
    # debugging aid, not part of determinism, that adds a kernel per allocation to each GPU step.
    torch.utils.deterministic.fill_uninitialized_memory = False
    datamodule = built("data", cfg.data, _convert_="all")  # plain containers in hparams and checkpoints
    model = built("model", cfg.model, _convert_="all")  # plain containers in hparams and checkpoints
    history, evaluation = History(), Evaluation()
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    callbacks += [history, evaluation, *extra_callbacks]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    trainer = built("trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False,
                    plugins=[background_checkpoint_io()],
                    precision=native_precision(cfg.trainer.precision, cfg.trainer.accelerator))
    return datamodule, model, trainer, history, evaluation


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
    """The run: build, fit (or resume), test the checkpoint validation chose, write its report files."""
    readings = BestAtEpochs(cfg.read_epochs) if cfg.read_epochs else None
    datamodule, model, trainer, history, evaluation = build(cfg, (readings,) if readings else ())
    code = provenance()  # now, before training: the checkout may change while a long run goes on
    resume_from = resume_point(cfg)
    if trainer.is_global_zero:
        log.info("Model: %s, %s parameters; %s, precision %s", type(model).__name__,
                 f"{sum(p.numel() for p in model.parameters()):,}", device_words(trainer), trainer.precision)
    for tracker in trackers(trainer):
        config = OmegaConf.to_container(cfg, resolve=True)
        tracker.describe(artifacts.distinguishing({"model": type(model).__name__, "precision": str(trainer.precision),
                                                   "config": config}), OmegaConf.to_yaml(config), code["git_commit"])
    start = time.perf_counter()
    with warnings.catch_warnings():
        if resume_from is not None:  # a resumed run continues in its own folder, which holds its checkpoints
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    fit_seconds = time.perf_counter() - start
    # Copied now: testing from a checkpoint restores callback states too, History's included, which
    # would cut its list back to the epochs the best checkpoint had seen.
    epochs = list(history.epochs)
    read = read_epochs(trainer, model, datamodule, readings, epochs, cfg.test) if readings else None
    tested = test_best(cfg, trainer, model, datamodule, evaluation, epochs,
                       weights_in_memory_may_be_best=readings is None)
    metrics = run_metrics(cfg, trainer, model, datamodule, epochs, tested, fit_seconds, code, read)
    if trainer.is_global_zero:
        write_and_say(cfg, trainer, model, datamodule, epochs, tested, metrics)
    return metrics


def resume_point(cfg: DictConfig) -> Path | None:
    """The checkpoint to continue from: the newest in the run's folder, with resume=, or when a multirun
    job finds checkpoints in its own folder, because it was requeued (SLURM: time limit, preemption)."""
    checkpoints = checkpoint_dir(cfg)
    requeued = HydraConfig.get().mode == RunMode.MULTIRUN and checkpoints is not None and checkpoints.is_dir()
    if not (cfg.resume or requeued):
        return None
    resume_from = newest_checkpoint(checkpoints) if checkpoints is not None else None
    log.info("resuming from %s", resume_from or "nothing: no checkpoint yet, starting afresh")
    return resume_from


@dataclass
class Outcome:
    """What the run's test used and gave: the epoch validation chose, its checkpoint, the test's figures
    ({} with test=false), and the run's Evaluation (its report and mistakes)."""
    best: dict
    best_path: str
    monitor: str | None
    test: dict
    evaluation: Evaluation


def test_best(cfg: DictConfig, trainer, model, datamodule, evaluation: Evaluation, epochs: list[dict],
              weights_in_memory_may_be_best: bool) -> Outcome:
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    best = tested_epoch(epochs, checkpoint)
    # The best checkpoint of the last epoch holds the weights still in memory (unless readings loaded others):
    # test those rather than read the file back.
    in_memory = weights_in_memory_may_be_best and bool(epochs) and best.get("epoch") == epochs[-1]["epoch"]
    ckpt_path = None if in_memory else best_path or None
    test = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0] if cfg.test else {}
    return Outcome(best, best_path, checkpoint.monitor if checkpoint is not None else None, test, evaluation)


def run_metrics(cfg: DictConfig, trainer, model, datamodule, epochs: list[dict], tested: Outcome, fit_seconds: float,
                code: dict, read: dict | None) -> dict:
    """metrics.json of a finished run: what the sweep report, TensorBoard's HParams and a resume read."""
    train_seconds = sum(e["train_seconds"] for e in epochs)
    test, best = tested.test, tested.best
    return {
        "status": "ok",
        "overrides": list(HydraConfig.get().overrides.task),
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_acc": test.get("test_acc"),
        "test_loss": test.get("test_loss"),
        "best_val_acc": best.get("val_acc"),
        "best_val_loss": best.get("val_loss"),
        "best_epoch": best.get("epoch"),
        "best_checkpoint": tested.best_path,
        "misclassified_shown": len(tested.evaluation.mistakes["true"]) if test else None,  # misclassified.png's count
        "epochs": len(epochs),
        "fit_seconds": fit_seconds,
        "train_samples_per_second": sum(e["train_samples"] for e in epochs) / train_seconds if train_seconds else None,
        "device": str(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "data_sha256": datamodule.file_sha256,
        "provenance": code,
        "history": epochs,
        # read_epochs: {k: what a k-epoch run would report}, read from this run (see mnist_cnn.epoch_readings)
        **({"read_at_epochs": read} if read is not None else {}),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def write_and_say(cfg: DictConfig, trainer, model, datamodule, epochs: list[dict], tested: Outcome,
                  metrics: dict) -> None:
    """The run's report files, then the console's last lines: the test's figures and where the run is."""
    out = Path(HydraConfig.get().runtime.output_dir)
    artifacts.write_run(out, trainer, model, datamodule, epochs, tested.evaluation, metrics)
    if cfg.resume:
        save_resumed_config(out, cfg)
    for tracker in trackers(trainer):
        tracker.finish(metrics, tested.best_path or None, trainer.global_step)
    if tested.test and trainer.fast_dev_run:
        log.info("Smoke run (trainer.fast_dev_run=%s): every stage ran on %s batch(es); its figures say the code "
                 "runs, not how well the model learns", cfg.trainer.fast_dev_run, int(trainer.fast_dev_run))
    elif tested.test:
        best = tested.best
        which = f"epoch {best['epoch']}'s checkpoint" if best.get("epoch") else "the final weights"
        log.info("Test accuracy %.4f, loss %.4f (%s, chosen by %s)", tested.test["test_acc"], tested.test["test_loss"],
                 which, tested.monitor or "none")
    log.info("Run directory: %s", out)


def trackers(trainer) -> list[tracking.RunMLFlowLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, tracking.RunMLFlowLogger)]


def checkpoint_dir(cfg: DictConfig) -> Path | None:
    """Where the run's checkpoints are: the checkpoint callback's dirpath, the one source for resume,
    requeue and the interruption record. None without a checkpoint callback."""
    checkpoint = (cfg.callbacks or {}).get("checkpoint")
    return Path(checkpoint.dirpath) if checkpoint is not None and checkpoint.get("dirpath") else None


def save_resumed_config(out: Path, cfg: DictConfig) -> None:
    """What Hydra writes into .hydra/ at a job's start, written only once a resume has succeeded or stopped
    at a step with a checkpoint, so that a failed one leaves the run's record as it was; the next resume
    replays these overrides."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    write_atomically(out / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(overrides))
    write_atomically(out / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))


def device_words(trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}" + (f" x {trainer.world_size}" if trainer.world_size > 1 else "")
    return f"CPU, {torch.get_num_threads()} threads" + (f" x {trainer.world_size} processes" if trainer.world_size > 1 else "")


def tested_epoch(epochs: list[dict], checkpoint) -> dict:
    """The history entry of the epoch whose checkpoint is tested: by the checkpoint callback's monitor
    and mode (val_acc, max, by default), the first of equals, as ModelCheckpoint keeps the first."""
    monitor, mode = (checkpoint.monitor, checkpoint.mode) if checkpoint is not None and checkpoint.monitor else ("val_acc", "max")
    scored = [e for e in epochs if e.get(monitor) is not None]
    return (min if mode == "min" else max)(scored, key=lambda e: e[monitor], default={})


def record(cfg: DictConfig, status: str, **fields) -> None:
    """metrics.json of a run that did not finish: why, for the user and the sweep report."""
    hydra_cfg = HydraConfig.get()
    path = Path(hydra_cfg.runtime.output_dir) / "metrics.json"
    if cfg.resume and status == "failed" and finished_metrics(path.parent) is not None:
        log.warning("the resume failed; %s still describes the finished run", path)
        return
    try:
        artifacts.write_json(path, {"status": status, **fields, "overrides": list(hydra_cfg.overrides.task),
                                    "config": OmegaConf.to_container(cfg, resolve=False)})
    except OSError as exc:  # a full disk, say: the error that brought us here is the one to report
        log.warning("could not write %s: %s", path, exc.strerror)
    tracking_store.mark(path.parent, status, fields.get("reason"))


def resume_command(run_dir: str) -> str:
    """The command line that continues this run: the same overrides, plus resume=<its folder>."""
    program = ["python", sys.argv[0]] if sys.argv[0].endswith(".py") else [Path(sys.argv[0]).name]
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    return shlex.join([*program, *overrides, f"resume={run_dir}"])


def record_interruption(cfg: DictConfig, exc: Interrupted) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    folder = checkpoint_dir(cfg)
    last = folder / "last.ckpt" if folder is not None else None
    command = resume_command(run_dir)
    record(cfg, "interrupted", signal=exc.name, step=exc.step, epoch=exc.epoch,
           checkpoint=str(last) if last is not None and last.exists() else None, resume_command=command)
    if cfg.resume and exc.step is not None:  # it trained past the record it started from: say what it now is
        try:
            save_resumed_config(Path(run_dir), cfg)
        except OSError as error:
            log.warning("could not update %s/.hydra: %s", run_dir, error.strerror)
    saved = "; last.ckpt written" if exc.step is not None else ""
    print(f"{PROG}: {exc}{saved}. Resume with:\n  {command}", file=sys.stderr)


def record_failure(cfg: DictConfig, exc: BaseException, multirun: bool) -> None:
    """A job that fails leaves metrics.json saying why, for the sweep report. A single run's user
    error is said once, by the entry point's one line; a bug gets its traceback in the log."""
    reason = f"{type(exc).__name__}: {one_line(exc)}"
    ours = not isinstance(exc, (UserError, MNISTUnavailable, OSError, FloatingPointError))
    if multirun or ours:
        log.error("job failed: %s", reason, exc_info=ours)
    record(cfg, "failed", reason=reason)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def run(cfg: DictConfig) -> float | None:
    """Returns the best validation accuracy: the value an optimising sweeper maximises."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        with Interruptible():
            check_train(cfg)
            return fit_and_test(cfg)["best_val_acc"]
    except Interrupted as exc:
        record_interruption(cfg, exc)
        raise  # stops a sweep too, as a signal should
    except SIGTERMException:  # Lightning's own, under DDP: stopped at a step, saved nothing there
        exc = Interrupted(signal.SIGTERM)
        record_interruption(cfg, exc)
        raise exc from None
    except Exception as exc:
        record_failure(cfg, exc, multirun)
        if multirun:  # one bad job must not stop the others
            return None
        if isinstance(exc, OSError) and exc.filename:  # a full disk, a folder that went away
            exit_with(PROG, exc, status=1)
        if isinstance(exc, (UserError, MNISTUnavailable, FloatingPointError)):
            exit_with(PROG, exc)  # SystemExit passes Hydra's job wrapper, which would add lines of its own
        raise


def main() -> None:
    args = sys.argv[1:]
    try:
        check_overrides(args)
        resume = next((a.partition("=")[2] for a in args if a.startswith("resume=")), None)
        if resume:
            sys.argv[1:] = resume_arguments(resume, args)
        else:
            flags, overrides = split_args(args)
            check_given(overrides, multirun=bool({"-m", "--multirun"} & set(flags)) or any(
                o.startswith("sweep=") for o in overrides))
    except Finished as exc:
        print(f"{PROG}: {exc}")
        sys.exit(0)
    except ConfigError as exc:
        exit_with(PROG, exc)
    usage.register()  # --help's text (hydra.help.template)
    run_hydra(PROG, run)


def resume_arguments(resume: str, args: list[str]) -> list[str]:
    """A resumed run continues in its own directory with its own saved overrides (mnist_cnn.resume), and
    Hydra leaves its .hydra/ as it is until the resume has succeeded (save_resumed_config)."""
    flags, given = split_args(args)
    if {"-m", "--multirun"} & set(flags):
        raise ConfigError(f"resume={resume}: a resume continues one run; leave out -m")
    overrides = resume_overrides(resume, given)
    run_dir = next((a for a in args if a.startswith("hydra.run.dir=")), f"hydra.run.dir={resume}")
    return [*flags, *overrides, f"resume={resume}", run_dir, "hydra.output_subdir=null"]


if __name__ == "__main__":
    main()
