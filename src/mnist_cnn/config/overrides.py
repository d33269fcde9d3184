"""mnist-train's Hydra command line: its flags and overrides told apart, checked against the schema (a
key that no schema declares is refused, with or without Hydra's +, naming the declared keys it is
closest to: `did you mean trainer.max_epochs?`), and Hydra's and OmegaConf's errors cut to one line."""

from __future__ import annotations

import os
import re
import typing
from contextlib import contextmanager
from dataclasses import is_dataclass
from importlib import resources
from typing import Iterator

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, InstantiationException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from mnist_cnn.config.model import MOVED
from mnist_cnn.config.schema import declared_keys
from mnist_cnn.errors import ConfigError
from mnist_cnn.suggest import closest, did_you_mean

CONFIG_PATH = "pkg://mnist_cnn.conf"  # conf/ of the repository, installed with the package
NETWORK = "model.net"  # the node whose keys are its class's constructor's
# OmegaConf's words for a value of the wrong type -> what the key takes
WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list, such as [128,50]"}

# Options renamed, by group: "seed" was both the 2020 lab and the random seed (seed=42)
RENAMED = {"experiment": {"seed_baseline": "lab_baseline", "seed_elu": "lab_elu"}}


def check_overrides(args: list[str]) -> None:
    """mnist-train's command-line overrides name declared keys and groups, with or without +: a slip
    (`+epochs=5`, `trainer.max_epoch=1`) is refused naming the closest keys, before Hydra would add it
    to the config and run anyway. Hydra's own keys (hydra.*) are Hydra's to check."""
    overrides = split_args(args)[1]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return  # Hydra reports the parse error itself, in one line (mnist_cnn.errors.one_line)
    keys = declared_keys()
    groups = [p.name for p in resources.files("mnist_cnn.conf").iterdir() if p.is_dir() and p.name != "__pycache__"]
    for o in parsed:
        name = o.key_or_group
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        old = next((v for v in values if isinstance(v, str) and v in RENAMED.get(name, {})), None)
        if old:
            raise ConfigError(
                f"{name}={old} is now {name}={RENAMED[name][old]}: the lab's runs are lab_baseline and "
                f"lab_elu, so that seed= is only the random seed"
            )
        if o.is_delete() and name in ("experiment", "data"):
            raise ConfigError(
                f"~{name} is not allowed: experiment_data is chosen by ${{experiment}}_${{data}}; "
                "leave the option out instead (no experiment is the default)"
            )
        group = name in groups or name.split("/")[0] in groups or name.startswith("hydra/")
        if group and not o.is_sweep_override() and not o.is_delete() and o.value() is None:
            # Hydra refuses it too, with a ValueError that names no group
            folder = resources.files("mnist_cnn.conf").joinpath(name)
            options = (
                sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml")) if folder.is_dir() else []
            )
            raise ConfigError(
                f"{name}=null is not allowed: a config group takes one of its options"
                + (f": expected one of {', '.join(options)}" if options else "")
            )
        if group or name == "hydra" or name.startswith("hydra.") or name.startswith(f"{NETWORK}."):
            continue  # a network's keys are its constructor's: checked once the config names it (type_network)
        if name in MOVED:
            raise ConfigError(f"{name} is now {MOVED[name]}")
        if name.startswith("model.") and name.count(".") == 1 and name not in keys and not closest(name, keys):
            raise ConfigError(
                f"{name} is not a key of the model node: the network's arguments are {NETWORK}.<argument> "
                f"({NETWORK}.{name[len('model.') :]}), beside model.optimizer and model.schedule"
            )
        if name not in keys and not any(k.startswith(f"{name}.") for k in keys):
            raise ConfigError(f"{name} is not a known key{did_you_mean(name, keys + ([] if '.' in name else groups))}")


def network_keys_added(args: list[str]) -> list[str]:
    """The command line with each `model.net.<argument>=` override made `++model.net.<argument>=`: a network's
    YAML need not list the arguments it leaves at their defaults, and Hydra refuses to set a key the composed
    config lacks; the keys are checked against the network's constructor once the config is composed."""
    return [f"++{a}" if a.startswith(f"{NETWORK}.") and "=" in a else a for a in args]


def config_dir_searched(args: list[str]) -> list[str]:
    """`--config-dir DIR` (-cd) as the override that adds DIR to Hydra's search path, for the compose API
    (mnist-train --help), which takes overrides, not flags."""
    flags, overrides = split_args(args)
    dirs = [flags[i + 1] for i, f in enumerate(flags[:-1]) if f in ("--config-dir", "-cd")]
    dirs += [f.partition("=")[2] for f in flags if f.startswith(("--config-dir=", "-cd="))]
    if not dirs or any(o.lstrip("+").startswith("hydra.searchpath=") for o in overrides):
        return overrides
    paths = ",".join(f"file://{os.path.abspath(d)}" for d in dirs)
    return [*overrides, f"hydra.searchpath=[{paths}]"]


# Hydra's command-line flags that take the next argument as their value
VALUED_FLAGS = {
    "--config-dir",
    "-cd",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
}


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


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut to the line that names key and value."""
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not a known option: expected one of {', '.join(exc.options)}" + did_you_mean(
            option, list(exc.options), n=1, prefix=f"{group}="
        )
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
        return f"{cause.full_key} is not a key of this config{did_you_mean(cause.full_key, declared_keys())}"
    text = str(exc) or (f"{type(cause).__name__}: {cause}" if cause else type(exc).__name__)
    return re.sub(r"\s+(full_key|object_type|reference_type)[:=].*", "", " ".join(text.split()))


@contextmanager
def composing() -> Iterator[None]:
    """Hydra's and OmegaConf's errors while a config is composed, as a ConfigError of one line. A class
    refusing what the schema passed it is our bug (see mnist_cnn.runs.run.built), and stays one."""
    try:
        yield
    except InstantiationException:
        raise
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(one_line(exc)) from None
