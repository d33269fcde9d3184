"""What the console entry points share: bad input ends in one line on stderr and exit status 2."""

from __future__ import annotations

import os
import sys
from typing import Callable

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException


class UserError(ValueError):
    """Bad input: a config value, a file, a checkpoint. Its message is the one line the user sees."""


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


def exit_with(prog: str, exc: BaseException, status: int = 2) -> None:
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    sys.exit(status)


def run_hydra(prog: str, hydra_main: Callable[[], object]) -> None:
    """Run a @hydra.main function; a config that cannot be composed is one line, not a traceback."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let Hydra's errors reach us unprinted
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        exit_with(prog, exc)
