"""What the five console commands share: one guard (`guarded`) through which a user's mistake
(mnist_cnn.errors, or an OSError naming a file) ends in one line on stderr and its exit status, and
anything else is a bug with its traceback; argparse's mistakes in one line too (Parser). Light on
purpose: predict, export and the demo import it without Hydra or Lightning (mnist-train's Hydra side
is mnist_cnn.config.overrides)."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Iterator

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
