"""mnist-train's command line against the schema: a key that no schema declares is refused, with or
without Hydra's +, naming the declared keys it is closest to (`did you mean trainer.max_epochs?`)."""

from __future__ import annotations

from dataclasses import MISSING as NO_DEFAULT
from dataclasses import fields, is_dataclass
from importlib import resources

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from mnist_cnn.cli import split_args
from mnist_cnn.config import SCHEMAS, ConfigError
from mnist_cnn.suggest import did_you_mean

GROUPS = ("data", "model", "trainer", "logger", "callbacks")  # TrainConfig's nodes, each from its config group
# Options renamed, by group: "seed" was both the 2020 lab and the random seed (seed=42)
RENAMED = {"experiment": {"seed_baseline": "lab_baseline", "seed_elu": "lab_elu"}}


def declared_keys() -> list[str]:
    """Every key mnist-train's schema declares, dotted (model.* for every model together)."""
    keys = set()

    def walk(schema, prefix: str) -> None:
        for f in fields(schema):
            default = f.default_factory() if f.default_factory is not NO_DEFAULT else None
            if is_dataclass(default):
                walk(type(default), f"{prefix}{f.name}.")
                continue
            if not (prefix == "" and f.name in GROUPS):
                keys.add(prefix + f.name)

    for path, schema in SCHEMAS.items():
        group, *option = path.split("/")[1:]
        prefix = "" if group == "train" else f"{group}.{option[0]}." if group in ("callbacks", "logger") else f"{group}."
        walk(schema, prefix)
    return sorted(keys)


def check_overrides(args: list[str]) -> None:
    """mnist-train's command-line overrides name declared keys and groups, with or without +: a slip
    (`+epochs=5`, `trainer.max_epoch=1`) is refused naming the closest keys, before Hydra would add it
    to the config and run anyway. Hydra's own keys (hydra.*) are Hydra's to check."""
    overrides = split_args(args)[1]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return  # Hydra reports the parse error itself, in one line (mnist_cnn.cli.one_line)
    keys = declared_keys()
    groups = [p.name for p in resources.files("mnist_cnn.conf").iterdir() if p.is_dir() and p.name != "__pycache__"]
    for o in parsed:
        name = o.key_or_group
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        old = next((v for v in values if isinstance(v, str) and v in RENAMED.get(name, {})), None)
        if old:
            raise ConfigError(f"{name}={old} is now {name}={RENAMED[name][old]}: the lab's runs are lab_baseline and "
                              f"lab_elu, so that seed= is only the random seed")
        if o.is_delete() and name in ("experiment", "data"):
            raise ConfigError(f"~{name} is not allowed: experiment_data is chosen by ${{experiment}}_${{data}}; "
                              "leave the option out instead (no experiment is the default)")
        group = name in groups or name.split("/")[0] in groups or name.startswith("hydra/")
        if group and not o.is_sweep_override() and not o.is_delete() and o.value() is None:
            # Hydra refuses it too, with a ValueError that names no group
            folder = resources.files("mnist_cnn.conf").joinpath(name)
            options = sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml")) if folder.is_dir() else []
            raise ConfigError(f"{name}=null is not allowed: a config group takes one of its options"
                              + (f": expected one of {', '.join(options)}" if options else ""))
        if group or name == "hydra" or name.startswith("hydra."):
            continue
        if name not in keys and not any(k.startswith(f"{name}.") for k in keys):
            raise ConfigError(f"{name} is not a known key{did_you_mean(name, keys + ([] if '.' in name else groups))}")
