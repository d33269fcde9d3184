"""A class's constructor signature as its config schema: each argument's type and default from the signature,
its range from `typing.Annotated` (annotated_types' Ge, Gt, Le, Lt, Interval, as pydantic reads them), its closed
set from `typing.Literal`, its meaning from the docstring's Args section. What a network, the data module and the
speed plug-in take is declared once, in their constructors, and Hydra and the checks read it from there.

hydra-zen's `builds(cls, populate_full_signature=True)` makes the same dataclass but drops the ranges and the
meanings, which the checks (mnist_cnn.config.checks) and `--help` (mnist_cnn.cli.usage) need; pydantic checks values
but knows nothing of OmegaConf's nodes, which Hydra's overrides and interpolations need.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import types
import typing
from functools import cache
from typing import Any, List, Literal, Optional

from omegaconf import MISSING

from mnist_cnn.config.keys import key
from mnist_cnn.errors import ConfigError

# What the run gives every network, from the dataset: not the user's to set
SUPPLIED = ("input_shape", "num_classes")
RANGES = ("ge", "gt", "le", "lt")
SIMPLE = (int, float, bool, str)


def import_class(path: str, where: str) -> type:
    """The class `path` names (a dotted import path), or one line saying why it cannot be had."""
    module, _, name = str(path).rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except ImportError as exc:
        raise ConfigError(
            f"{where}._target_={path}: cannot import {module} ({exc}); its folder must be on "
            "PYTHONPATH, or its package installed"
        ) from None
    except AttributeError:
        found = None
    if not isinstance(found, type):
        raise ConfigError(f"{where}._target_={path}: {module or path} has no class {name}")
    return found


def docstring_args(cls: type) -> dict[str, str]:
    """The meanings the Args section of the class's (or its __init__'s) docstring gives, Google style."""
    meanings: dict[str, str] = {}
    for doc in (inspect.getdoc(cls.__init__), inspect.getdoc(cls)):
        lines = (doc or "").splitlines()
        start = next((i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:")), None)
        if start is None:
            continue
        name = None
        for line in lines[start + 1 :]:
            if line.strip() and not line.startswith(" "):
                break  # the next section
            found = re.match(r"\s{2,4}(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line)
            if found and len(line) - len(line.lstrip()) <= 4:
                name = found[1]
                meanings.setdefault(name, found[2].strip())
            elif name and line.strip():
                meanings[name] = f"{meanings[name]} {line.strip()}"
    return meanings


def rule_of(annotation: Any) -> tuple[Any, dict]:
    """A parameter's annotation as (the type OmegaConf checks, its rule: ge, gt, le, lt, choices)."""
    rule: dict = {}
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *marks = typing.get_args(annotation)
        for mark in marks:
            rule.update({r: getattr(mark, r) for r in RANGES if getattr(mark, r, None) is not None})
    return omegaconf_type(annotation, rule), rule


def omegaconf_type(annotation: Any, rule: dict) -> Any:
    """What OmegaConf can check of an annotation: int, float, bool, str, their lists and optionals; anything
    else is Any (checked by the class itself when it is built)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner, inner_rule = rule_of(rest[0]) if len(rest) == 1 else (Any, {})
        rule.update(inner_rule)
        return Optional[inner] if type(None) in args and inner is not Any else inner
    if origin is Literal:
        rule["choices"] = args
        kinds = {type(a) for a in args}
        return kinds.pop() if len(kinds) == 1 and kinds <= set(SIMPLE) else Any
    if origin in (list, tuple, List) and args and (origin is not tuple or len(set(args) - {...}) == 1):
        item, item_rule = rule_of(args[0])  # a range of the items is checked on each
        rule.update(item_rule)
        return List[item] if item in SIMPLE else Any
    if dataclasses.is_dataclass(annotation):
        return annotation
    return annotation if annotation in SIMPLE else Any


def schema_of(cls: type, target: bool = True) -> type:
    """The dataclass Hydra types `cls`'s config node with: a field per constructor argument (those in SUPPLIED
    left out), with `_target_` naming the class when `target`. A nested dataclass argument (its own fields
    declared the same way) becomes a section. Made once per class."""
    return made_schema(cls, target)


@cache
def made_schema(cls: type, target: bool) -> type:
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    meanings = docstring_args(cls)
    fields: list = [("_target_", str, key("the class", f"{cls.__module__}.{cls.__qualname__}"))] if target else []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in SUPPLIED or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        declared, rule = rule_of(hints.get(name, Any))
        default = MISSING if parameter.default is inspect.Parameter.empty else parameter.default
        if dataclasses.is_dataclass(declared):
            section = schema_of(declared, target=False)
            given = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else {}
            fields.append(
                (
                    name,
                    section,
                    dataclasses.field(
                        default_factory=lambda s=section, g=given: s(**g), metadata={"help": meanings.get(name, "")}
                    ),
                )
            )
            continue
        if isinstance(default, tuple):
            default = list(default)
        fields.append((name, declared, key(meanings.get(name, ""), default, **rule)))
    made = dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)
    # named so that pickle (a launcher sending a job its config) finds it by reference, through __getattr__
    made.__module__, made.__qualname__ = (
        __name__,
        ":".join(("schema" if target else "section", cls.__module__, cls.__qualname__)).replace(".", ":"),
    )
    return made


def __getattr__(name: str) -> type:
    """A schema by the name schema_of gives it (schema:<module>:<class>), made in this process if need be."""
    kind, _, path = name.partition(":")
    module, _, cls = path.rpartition(":")
    if kind not in ("schema", "section") or not module:
        raise AttributeError(name)
    return schema_of(getattr(importlib.import_module(module.replace(":", ".")), cls), target=kind == "schema")


def arguments_of(cls: type) -> list[str]:
    """The keys a config of `cls` takes: its constructor's arguments, less those the run supplies."""
    return [f.name for f in dataclasses.fields(schema_of(cls)) if f.name != "_target_"]
