"""What the five console commands share: one guard (`guarded`) through which a user's mistake
(mnist_cnn.errors, or an OSError naming a file) ends in one line on stderr and its exit status, and
anything else is a bug with its traceback; argparse's mistakes in one line too (Parser). Light on
purpose: predict, export and the demo import it without Hydra or Lightning (mnist-train's Hydra side
is mnist_cnn.overrides)."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn

from mnist_cnn.errors import UserError
from mnist_cnn.interrupt import Interrupted


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


def one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def exit_with(prog: str, exc: BaseException) -> NoReturn:
    """One line on stderr, naming what was wrong; exit with the error's status (mnist_cnn.errors'), or 1 for
    an OSError naming a file (a full disk, say)."""
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    sys.exit(getattr(exc, "status", 1 if isinstance(exc, OSError) else 2))


def users_mistake(exc: BaseException) -> bool:
    """Whether `exc` is the user's to fix (said in one line), not a bug in our code (a traceback)."""
    return isinstance(exc, UserError) or (isinstance(exc, OSError) and bool(exc.filename))


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
