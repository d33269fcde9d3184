"""How a schema declares a key (mnist_cnn.config.schema, mnist_cnn.config.model): its meaning, default and
rule, kept in the dataclass field's metadata; and the rules several keys share."""

from __future__ import annotations

import re
import typing
from dataclasses import field
from typing import Any

from omegaconf import MISSING


# The closed sets torch and Lightning define, asked of the installed versions when a value is checked
# (mnist_cnn.config.checks), not when the schema is imported: `mnist-train --help` then answers without
# importing either.
def optimizers() -> tuple[str, ...]:
    import torch

    return tuple(
        sorted(
            name
            for name, cls in vars(torch.optim).items()
            if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
        )
    )


def precisions() -> tuple[str, ...]:
    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    return ("auto",) + typing.get_args(_PRECISION_INPUT_STR) + typing.get_args(_PRECISION_INPUT_STR_ALIAS)


def strategies() -> tuple[str, ...]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ("auto", *StrategyRegistry.available_strategies())


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range
FOLDER_NAME = re.compile(r"(?!\.\.?$)[\w.=,+-]+")  # one folder, not . or ..


def choices_of(rule: dict) -> tuple:
    choices = rule.get("choices", ())
    return choices() if callable(choices) else choices


def key(help: str, default: Any = MISSING, **rule: Any) -> Any:
    """A config key: what it means, its default, and what is allowed beyond its type. Rules: ge, gt, le, lt
    (numbers; each item of a list), choices (a closed set, or a function that returns it), allowed + test (anything else; refused: a value
    the test refuses, for tests/test_config.py's table, where "many" would pass)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **rule})
    return field(default=default, metadata={"help": help, **rule})


def section(cls: type, help: str, **values: Any) -> Any:
    """A nested section of `cls`, with `values` instead of its defaults where given."""
    return field(default_factory=lambda: cls(**values), metadata={"help": help})


def batch_count(v) -> bool:
    return (
        v is None
        or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
        or (isinstance(v, float) and 0.0 <= v <= 1.0)
    )


def device_count(v) -> bool:
    return v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or v == -1))


LIMIT = dict(allowed="null, a number of batches (an integer >= 0) or a fraction between 0.0 and 1.0", test=batch_count)
RUN_DIR = "${hydra:runtime.output_dir}"
