"""One job of mnist-train: its config checked, the run built, fitted and tested (mnist_cnn.runs.run), its report
written; a failure or an interruption recorded in metrics.json and said in one line. Imported once
Hydra has composed the config (mnist_cnn.cli.train), so that `--help` never waits for torch or Lightning."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from mnist_cnn.atomic import write_atomically
from mnist_cnn.config.checks import check_train
from mnist_cnn.config.overrides import one_line
from mnist_cnn.errors import exit_with, users_mistake
from mnist_cnn.reports import run_files as artifacts
from mnist_cnn.runs.resume import finished_metrics
from mnist_cnn.runs.run import Run, Tested, checkpoint_dir, in_search
from mnist_cnn.tracking import store as tracking_store
from mnist_cnn.training.interrupt import Interrupted, Interruptible, Pruned

log = logging.getLogger(__name__)
PROG = "mnist-train"
# Lightning warns, with its file and line, when an epoch has fewer batches than trainer.log_every_n_steps
# (a quick run with trainer.limit_train_batches): the epoch's figures are logged all the same, and the
# step loss at the interval the key sets, across epochs.
warnings.filterwarnings(
    "ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval"
)


def fit_and_test(cfg: DictConfig) -> dict:
    """The run: built, fitted (or resumed), its chosen checkpoint tested, its report files written."""
    run = Run.build(cfg)
    metrics, tested = run.fit_and_test()
    if run.trainer.is_global_zero:
        say_test(cfg, run, tested)
        run.write(metrics, tested)
        if cfg.resume:
            save_resumed_config(run.folder, cfg)
        log.info("Run directory: %s", run.folder)
        for tracked in filter(None, (tracker.where() for tracker in run.trackers)):
            log.info(tracked)
        log.info(run.stages.line())
    run.stages.ended()
    return metrics


def say_test(cfg: DictConfig, run: Run, tested: Tested) -> None:
    """The test's figures, as soon as the test has given them."""
    if tested.test and run.trainer.fast_dev_run:
        log.info(
            "Smoke run (trainer.fast_dev_run=%s): every stage ran on %s batch(es); its figures say the code "
            "runs, not how well the model learns",
            cfg.trainer.fast_dev_run,
            int(run.trainer.fast_dev_run),
        )
    elif tested.test:
        best = tested.best
        which = f"epoch {best['epoch']}'s checkpoint" if best.get("epoch") else "the final weights"
        log.info(
            "Test accuracy %.4f, loss %.4f (%s, chosen by %s)",
            tested.test["test_acc"],
            tested.test["test_loss"],
            which,
            tested.monitor or "none",
        )


def save_resumed_config(out: Path, cfg: DictConfig) -> None:
    """What Hydra writes into .hydra/ at a job's start, written only once a resume has succeeded or stopped
    at a step with a checkpoint, so that a failed one leaves the run's record as it was; the next resume
    replays these overrides."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    write_atomically(out / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(overrides))
    write_atomically(out / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))


def record(cfg: DictConfig, status: str, **fields) -> None:
    """metrics.json of a run that did not finish: why, for the user and the sweep report."""
    hydra_cfg = HydraConfig.get()
    path = Path(hydra_cfg.runtime.output_dir) / "metrics.json"
    if cfg.resume and status == "failed" and finished_metrics(path.parent) is not None:
        log.warning("the resume failed; %s still describes the finished run", path)
        return
    try:
        artifacts.write_json(
            path,
            {
                "status": status,
                **fields,
                "overrides": list(hydra_cfg.overrides.task),
                "config": OmegaConf.to_container(cfg, resolve=False),
            },
        )
    except OSError as exc:  # a full disk, say: the error that brought us here is the one to report
        log.warning("could not write %s: %s", path, exc.strerror)
    tracking_store.mark(path.parent, status, fields.get("reason"))


def resume_command(run_dir: str) -> str:
    """The command line that continues this run: the same overrides, plus resume=<its folder>; for a trial of a
    search, the command that continues the search's study (its folder's own, resume=<the search's folder>)."""
    program = ["python", sys.argv[0]] if sys.argv[0].endswith(".py") else [Path(sys.argv[0]).name]
    if in_search():
        return shlex.join([*program, f"resume={HydraConfig.get().sweep.dir}"])
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    return shlex.join([*program, *overrides, f"resume={run_dir}"])


def record_interruption(cfg: DictConfig, exc: Interrupted) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    folder = checkpoint_dir(cfg)
    last = folder / "last.ckpt" if folder is not None else None
    command = resume_command(run_dir)
    record(
        cfg,
        "interrupted",
        signal=exc.name,
        step=exc.step,
        epoch=exc.epoch,
        checkpoint=str(last) if last is not None and last.exists() else None,
        resume_command=command,
    )
    if cfg.resume and exc.step is not None:  # it trained past the record it started from: say what it now is
        try:
            save_resumed_config(Path(run_dir), cfg)
        except OSError as error:
            log.warning("could not update %s/.hydra: %s", run_dir, error.strerror)
    saved = "; last.ckpt written" if exc.step is not None else ""
    what = "the search" if in_search() else ""
    print(f"{PROG}: {exc}{saved}. Resume {what + ' ' if what else ''}with:\n  {command}", file=sys.stderr)


def record_failure(cfg: DictConfig, exc: BaseException, multirun: bool) -> None:
    """A job that fails leaves metrics.json saying why, for the sweep report. A single run's user
    error is said once, by the entry point's one line; a bug gets its traceback in the log."""
    reason = f"{type(exc).__name__}: {one_line(exc)}"
    ours = not users_mistake(exc)
    if multirun or ours:
        log.error("job failed: %s", reason, exc_info=ours)
    record(cfg, "failed", reason=reason)


def quiet_libraries() -> None:
    """Lightning sets its loggers' levels when it is imported, which is now after Hydra has configured
    logging (mnist_cnn.cli.train imports this module late, so that `--help` need not wait for it): the levels
    conf/hydra/job_logging gives them are set again."""
    for name, settings in (HydraConfig.get().job_logging.get("loggers") or {}).items():
        if settings and "level" in settings:
            logging.getLogger(name).setLevel(settings.level)


def run_job(cfg: DictConfig) -> float | None:
    """One job of mnist-train, whole: checked, fitted and tested, its files written; a failure or a signal
    recorded in metrics.json. Returns the best validation accuracy: the value an optimising sweeper maximises."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    quiet_libraries()
    try:
        with Interruptible():
            check_train(cfg)
            return fit_and_test(cfg)["best_val_acc"]
    except Interrupted as exc:
        record_interruption(cfg, exc)
        raise  # stops a sweep too, as a signal should
    except Pruned as exc:  # a search's trial, behind the others: its record says so, and the search goes on
        record(cfg, "pruned", reason=str(exc), epochs=exc.epoch)
        log.info("Trial %s", exc)
        return None
    except SIGTERMException:  # Lightning's own, under DDP: stopped at a step, saved nothing there
        exc = Interrupted(signal.SIGTERM)
        record_interruption(cfg, exc)
        raise exc from None
    except Exception as exc:
        record_failure(cfg, exc, multirun)
        if multirun:  # one bad job must not stop the others
            return None
        if users_mistake(exc):  # SystemExit passes Hydra's job wrapper, which would add lines of its own
            exit_with(PROG, exc)
        raise
