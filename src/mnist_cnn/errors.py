"""What a user's mistake raises: one hierarchy, each kind with its exit status. A leaf: it imports nothing
of the project, so every module may raise these. mnist_cnn.cli.guard.guarded says any of them in one line on
stderr and exits with its status; anything else that escapes a command is a bug, and shows as one."""

from __future__ import annotations

import importlib.util
import sys
from typing import NoReturn


class UserError(ValueError):
    """Bad input: a config value, a file, a checkpoint, a command-line argument. Its message is the one
    line the user sees."""

    status = 2


class ConfigError(UserError):
    """A config value, or a combination of values, that is not allowed."""


class DataUnavailable(UserError):
    """A dataset's files could not be fetched or do not match their checksums."""


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the run's settings (a learning rate too high, say)."""


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


def needs(module: str, extra: str, what: str) -> None:
    """One line, before any work, where `what` needs a package of an optional extra that is not installed."""
    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"{what} needs {module}, which is not installed: pip install 'mnist-cnn[{extra}]' "
            f"(in a checkout: pip install -e '.[{extra}]')"
        )
