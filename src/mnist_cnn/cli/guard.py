"""What the five console commands share: one guard (`guarded`) through which a user's mistake
(mnist_cnn.errors, or an OSError naming a file) ends in one line on stderr and its exit status, and
anything else is a bug with its traceback; argparse's mistakes in one line too (Parser). Light on
purpose: predict, export and the demo import it without Hydra or Lightning (mnist-train's Hydra side
is mnist_cnn.config.overrides)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, NoReturn

from mnist_cnn.errors import exit_with, users_mistake
from mnist_cnn.training.interrupt import Interrupted


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake said in one line (argparse prints its whole usage first)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    value = int(text)  # argparse turns a ValueError into "invalid positive_int value"
    if value < 1:
        raise ValueError(text)
    return value


@contextmanager
def guarded(prog: str) -> Iterator[None]:
    """The one error path of every command: a user's mistake is one line and its status (an OSError
    naming a file: 1, a full disk say; mnist_cnn.errors' own statuses), a Ctrl-C is one line and 130, a
    training run stopped by a signal has said what it saved and exits 128 + the signal."""
    try:
        yield
    except Interrupted as exc:
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not users_mistake(exc):
            raise
        exit_with(prog, exc)


def leave_after(main: Callable[[], object]) -> NoReturn:
    """A console script's end: main() run, then the process ends as Python would end it — other threads joined,
    atexit's handlers run, the streams flushed — but without tearing down every module it imported, which for
    torch, Lightning and matplotlib takes over a second and writes nothing (benchmarks.stages measures it).
    Not for main() called from Python, a test's say: it would end the caller too."""
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # noqa: SLF001 -- what Python runs at exit, before the teardown skipped here
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream: nothing more can be said there
            pass
    os._exit(status)
