"""What the console entry points share: bad input ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import re
import sys
import typing
from dataclasses import is_dataclass
from typing import Callable

from hydra.errors import HydraException, InstantiationException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from mnist_cnn.interrupt import Interrupted
from mnist_cnn.suggest import did_you_mean

CONFIG_PATH = "pkg://mnist_cnn.conf"  # conf/ of the repository, installed with the package
# OmegaConf's words for a value of the wrong type -> what the key takes
WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list, such as [128,50]"}


def expected(error: ValidationError) -> str | None:
    """What the schema declares for the key a ValidationError names, in words: read from the dataclass that
    declares the key (or, for a list's item, from the list's declared type), not from OmegaConf's message."""
    if error.value is None:
        return "a value, not null"
    if is_dataclass(error.object_type):
        declared = typing.get_type_hints(error.object_type).get(str(error.key))
    else:  # an item of a list: the list's declared type holds the item's
        declared = next(iter(typing.get_args(_without_none(error.ref_type))), None)
    declared = _without_none(declared)
    return WORDS.get(typing.get_origin(declared) or declared)


def _without_none(declared):
    """Optional[X] -> X."""
    args = [a for a in typing.get_args(declared) if a is not type(None)]
    return args[0] if typing.get_origin(declared) is typing.Union and len(args) == 1 else declared


# Hydra's command-line flags that take the next argument as their value
VALUED_FLAGS = {"--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--cfg", "-c", "--package",
                "-p", "--experimental-rerun", "--shell-completion", "-sc"}


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides) of a command line."""
    flags, overrides, taking = [], [], False
    for a in args:
        if taking or a.startswith("-"):
            flags.append(a)
            taking = not taking and a in VALUED_FLAGS
        else:
            overrides.append(a)
    return flags, overrides


class UserError(ValueError):
    """Bad input: a config value, a file, a checkpoint. Its message is the one line the user sees."""


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut to the line that names key and value."""
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return (f"{group}={option} is not a known option: expected one of {', '.join(exc.options)}"
                + did_you_mean(option, list(exc.options), n=1, prefix=f"{group}="))
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the override {exc.override!r}: {' '.join(exc.message.split())}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    cause = exc.__cause__
    takes = expected(cause) if isinstance(cause, ValidationError) and cause.full_key else None
    if takes:
        value = "null" if cause.value is None else cause.value
        return f"{cause.full_key}={value} is not allowed: expected {takes}"
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:  # a key this config lacks
        from mnist_cnn.overrides import declared_keys  # it needs this module first
        return f"{cause.full_key} is not a key of this config{did_you_mean(cause.full_key, declared_keys())}"
    text = str(exc) or (f"{type(cause).__name__}: {cause}" if cause else type(exc).__name__)
    return re.sub(r"\s+(full_key|object_type|reference_type)[:=].*", "", " ".join(text.split()))


CKPT_HELP = "a checkpoint written by mnist-train, or a run directory (the checkpoint its test used)"


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


def exit_with(prog: str, exc: BaseException, status: int = 2) -> None:
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    sys.exit(status)


def run_hydra(prog: str, hydra_main: Callable[[], object]) -> None:
    """Run a @hydra.main function. A config that cannot be composed, and a run folder that Hydra
    cannot create, are one line, not a traceback; a Ctrl-C outside training is one line too."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let Hydra's errors reach us unprinted
    try:
        hydra_main()
    except InstantiationException:  # a class refusing what the schema passed is our bug (see train.built)
        raise
    except (HydraException, OmegaConfBaseException) as exc:
        exit_with(prog, exc)
    except OSError as exc:  # what the job catches never gets here: this is Hydra's own run folder
        if not exc.filename:
            raise
        print(f"{prog}: error: {one_line(exc)} (the run folder: hydra.run.dir, or hydra.sweep.dir with -m)",
              file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:  # the job has said what it saved and how to resume
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
