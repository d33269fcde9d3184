"""What the console entry points share: bad input ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from importlib import resources
from typing import Callable

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException, ValidationError

from mnist_cnn.interrupt import Interrupted

CONFIG_PATH = "pkg://mnist_cnn.conf"  # conf/ of the repository, installed with the package
# OmegaConf's words for a value of the wrong type -> what the key takes
EXPECTED = {"to Integer": "an integer", "to Float": "a number", "valid bool": "true or false",
            "is not Optional": "a value, not null", "list or tuple": "a list, such as [128,50]",
            "to String": "a string"}


# Hydra's command-line flags that take the next argument as their value
VALUED_FLAGS = {"--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--cfg", "-c", "--package",
                "-p", "--experimental-rerun"}


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
        near = difflib.get_close_matches(option, exc.options, n=1, cutoff=0.6)
        return (f"{group}={option} is not a known option: expected one of {', '.join(exc.options)}"
                + (f"; did you mean {group}={near[0]}?" if near else ""))
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the override {exc.override!r}: {' '.join(exc.message.split())}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    dropped = re.match(r"Error resolving interpolation '(\$\{.*?\})'", str(exc))
    if dropped:  # the defaults list's one interpolation: experiment_data, chosen by ${experiment}_${data}
        return (f"~experiment and ~data are not allowed: experiment_data is chosen by {dropped[1]}; "
                f"leave the option out instead (no experiment is the default)")
    cause = exc.__cause__
    if isinstance(cause, ValidationError) and cause.full_key:
        expected = next((words for clue, words in EXPECTED.items() if clue in str(cause)), None)
        if expected:
            value = "null" if cause.value is None else cause.value
            return f"{cause.full_key}={value} is not allowed: expected {expected}"
    refused = re.match(r"Could not override '([^']+)'", str(exc))  # a key the chosen option does not have
    if isinstance(cause, OmegaConfBaseException) and "not in struct" in str(cause) or refused:
        key = refused[1] if refused else getattr(cause, "full_key", None) or str(cause).splitlines()[0]
        from mnist_cnn.overrides import declared_keys, did_you_mean  # they need this module first
        return f"{key} is not a key of this config{did_you_mean(key, declared_keys())}"
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
    except (HydraException, OmegaConfBaseException) as exc:
        exit_with(prog, exc)
    except ValueError as exc:  # Hydra refuses `group=null` with a ValueError that names no group
        nulled = [arg[:-len("=null")] for arg in sys.argv[1:] if arg.endswith("=null") and "." not in arg]
        if not nulled or not str(exc).startswith("Config group override must be"):
            raise
        folder = resources.files("mnist_cnn.conf").joinpath(nulled[0])  # hydra/... groups have plugins' options too
        ours = folder.is_dir() and "/" not in nulled[0]
        options = sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml")) if ours else []
        print(f"{prog}: error: {nulled[0]}=null is not allowed: a config group takes one of its options"
              + (f": expected one of {', '.join(options)}" if options else ""), file=sys.stderr)
        sys.exit(2)
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
