"""`mnist-train --help`: what the command does, the config groups a user chooses from with their options, and
every key of the config the command line composes (`mnist-train model=elu --help` shows the ELU network's
keys) with its type, value and meaning, read from the schema (mnist_cnn.config.schema). It goes through Hydra's own
help: conf/hydra/default.yaml sets hydra.help.template to `${mnist_train_help:}`, this resolver. mnist-train
itself answers `--help` by composing the config and printing the same text (print_help): Hydra's own
help lists every config group first, whether its template shows them or not, which took a second."""

from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass
from importlib import resources

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from mnist_cnn.cli.guard import guarded
from mnist_cnn.config.overrides import composing

RESOLVER = "mnist_train_help"
HIDDEN_GROUPS = ("hydra", "schema", "experiment_data", "__pycache__")  # chosen for the user, or Hydra's own

HEADER = """\
mnist-train: train one of the lab's CNNs on MNIST, then test the checkpoint that validation chose, once.

  mnist-train [group=option ...] [key=value ...]   one run (`python train.py` is the same command)
  mnist-train -m data.batch_size=32,64 seed=0,1,2   a sweep: a job per combination, then its report
  mnist-train resume=outputs/runs/<run>             continue a run where it stopped
  mnist-train --cfg job                             the composed config; -sc install=bash: completion

Each run writes its own folder under outputs/runs/ (README.md, "What a run writes")."""


def type_words(declared) -> str:
    """A field's declared type as a user reads it: int, float, bool, str, list, optional."""
    args = [a for a in typing.get_args(declared) if a is not type(None)]
    optional = typing.get_origin(declared) is typing.Union and type(None) in typing.get_args(declared)
    inner = args[0] if optional and len(args) == 1 else declared
    origin = typing.get_origin(inner) or inner
    word = {int: "int", float: "float", bool: "bool", str: "str", list: "list"}.get(origin, "any")
    return f"{word} or null" if optional else word


def keys(node: DictConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, value, meaning) of every key the schema declares in `node`, depth first."""
    schema = OmegaConf.get_type(node)
    declared = {f.name: f for f in fields(schema)} if is_dataclass(schema) else {}
    hints = typing.get_type_hints(schema) if is_dataclass(schema) else {}
    rows = []
    for name in node:
        if name in ("hydra", "_target_"):
            continue
        if OmegaConf.is_interpolation(node, str(name)):  # e.g. the run's folder, not known before the run
            value = node._get_node(str(name))._value()
        else:
            value = OmegaConf.select(node, str(name), throw_on_missing=False)
        if isinstance(value, DictConfig):
            rows += keys(value, f"{prefix}{name}.")
        elif name in declared:
            shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            rows.append(
                (
                    f"{prefix}{name}",
                    type_words(hints.get(name)),
                    "null" if shown is None else str(shown),
                    declared[name].metadata.get("help", ""),
                )
            )
    return rows


def groups() -> list[tuple[str, list[str]]]:
    folder = resources.files("mnist_cnn.conf")
    return [
        (g.name, sorted(f.name[:-5] for f in g.iterdir() if f.name.endswith(".yaml")))
        for g in sorted(folder.iterdir(), key=lambda p: p.name)
        if g.is_dir() and g.name not in HIDDEN_GROUPS
    ]


def help_text(_root_: DictConfig) -> str:
    choices = _root_.hydra.runtime.choices
    lines = [HEADER, "", "Groups: group=option chooses one (here: the option in use, *)"]
    for group, options in groups():
        lines.append(f"  {group + ':':<16}" + ", ".join(f"{o}*" if o == choices.get(group) else o for o in options))
    rows = keys(_root_)
    width = min(max(len(k) + len(t) + len(v) for k, t, v, _ in rows) + 6, 64)
    lines += ["", "Keys: key=value sets one (type = value here: meaning)"]
    lines += [f"  {f'{k}: {t} = {v}':<{width}}{m}" for k, t, v, m in rows]
    return "\n".join(lines)


def register() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        # Hydra fills the template with string.Template: $ is $$
        OmegaConf.register_new_resolver(RESOLVER, lambda _root_: help_text(_root_).replace("$", "$$"))


def print_help(prog: str, overrides: list[str]) -> None:
    """The help text for the config these overrides compose; a mistake in them is one line, as a run's is."""
    with guarded(prog), composing(), initialize_config_module("mnist_cnn.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        from mnist_cnn.config.checks import type_network  # imports the network's class, and so torch

        type_network(cfg)
    print(help_text(cfg))
