"""SIGTERM and SIGINT (what SLURM, Kubernetes, `timeout` and a closing terminal send; Ctrl-C): the run
stops at the end of the current training step with a resumable last.ckpt, says how to resume, and
exits 128 + the signal's number (143, 130).

Written because Lightning's own SIGTERM handling ends the process with status 0 and no checkpoint at
that step, and a Ctrl-C mid-step stops wherever it lands."""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A BaseException, as KeyboardInterrupt is: a signal is no error, and it must stop a sweep, not
    be recorded as one failed job among others."""

    def __init__(self, signum: int, step: int | None = None, epoch: int | None = None):
        self.signum, self.step, self.epoch = signum, step, epoch
        where = f" at step {step} (epoch {epoch})" if step is not None else ""
        super().__init__(f"interrupted by {self.name}{where}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # where Python delivers signals


def _already_stopping(signum, frame) -> None:
    print(f"{signal.Signals(signum).name}: already stopping, wait for the files to be written", file=sys.stderr)


def _stop_now(signum, frame) -> None:
    for s in SIGNALS:  # a second signal must not break off the writing of what the first one asked for
        signal.signal(s, _already_stopping)
    raise Interrupted(signum)


class Interruptible:
    """Outside training (data checks, testing, writing the run's files) a signal stops the run at
    once: every file is written atomically, so nothing is left half-written."""

    def __enter__(self):
        self.previous = {s: signal.getsignal(s) for s in SIGNALS} if _main_thread() else {}
        for s in self.previous:
            signal.signal(s, _stop_now)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class AtStepEnd:
    """During training a signal is only noted (`signum`); the checkpoint callback looks at it after
    each step and epoch, saves, and calls `stop`, which raises Interrupted. Under submitit (SLURM) its SIGUSR2 handler (time
    limit or preemption: requeue) is chained the same way, after the save."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def install(self) -> None:
        if not _main_thread():
            return
        chained = [signal.SIGUSR2] if callable(signal.getsignal(signal.SIGUSR2)) else []
        for s in (*SIGNALS, *chained):
            self.previous[s] = signal.getsignal(s)
            signal.signal(s, self._note)

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def _note(self, signum, frame) -> None:
        if self.signum is not None:
            return _already_stopping(signum, frame)
        self.signum = signum
        print(f"{signal.Signals(signum).name}: stopping after this step, writing last.ckpt", file=sys.stderr)

    def stop(self, step: int, epoch: int) -> None:
        """Called once the checkpoint is written: hand over to a chained handler, else raise."""
        signum, self.signum = self.signum, None
        handler = self.previous.get(signum)
        for s in self.previous:  # until the run has ended: the checkpoint may still be being written
            signal.signal(s, _already_stopping)
        if signum == signal.SIGUSR2 and callable(handler):
            handler(signum, None)  # submitit: requeue this job, then exit
        raise Interrupted(signum, step, epoch)


class Pruned(Exception):
    """A search's trial stopped at an epoch's end by the study's pruner (mnist_cnn.search.pruning): recorded as
    pruned, with the epochs it ran, not as failed."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch
