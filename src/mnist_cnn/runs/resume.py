"""`resume=<run dir>`: continue a run with its own saved overrides, checked before any of its files is touched.

The run directory holds the overrides it was started with (.hydra/overrides.yaml) and its composed config
(.hydra/config.yaml). A resume replays those overrides, with the ones given beside `resume=` on top. Only
keys that do not change what the run computes may differ (CHANGEABLE); trainer.max_epochs may grow, which
extends the run. Anything else (another model, data, batch size, learning rate, ...) is refused in one line
naming the key and both values, and a finished run that is not extended is said to be finished: in both
cases nothing of the run has been opened for writing.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

from mnist_cnn.errors import ConfigError

# Keys a resumed run may set differently from the run it continues: where it runs, how it reports and
# saves, and how long it goes on. Everything else is the run's identity.
CHANGEABLE = (
    "trainer.max_epochs",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.log_every_n_steps",
    "trainer.num_sanity_val_steps",
    "data.data_dir",
    "data.eval_batch_size",
    "test",
    "figures",
    "explain",
    "read_epochs",
    "callbacks.progress_bar.",
    "callbacks.checkpoint.every_n_steps",
    "callbacks.checkpoint.every_n_seconds",
    "hydra.",
)
NOT_SAVED = ("resume=", "hydra.run.dir=")


def changeable(key: str) -> bool:
    return any(key == c or (c.endswith(".") and key.startswith(c)) for c in CHANGEABLE)


def parse(overrides: list[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(overrides)


def name_of(o: Override) -> str:
    return o.key_or_group + (f"@{o.package}" if o.package else "")


def resume_overrides(run_dir: str, given: list[str]) -> list[str]:
    """The overrides that continue `run_dir`: its saved ones, with `given` on top. Raises ConfigError for a
    directory that is not a run, a change the run cannot take, or a finished run that is not extended."""
    run = Path(run_dir)
    saved_file, config_file = run / ".hydra" / "overrides.yaml", run / ".hydra" / "config.yaml"
    if not run.is_dir():
        raise ConfigError(f"resume={run_dir}: no such run directory")
    if not saved_file.is_file() or not config_file.is_file():
        raise ConfigError(f"resume={run_dir}: not a run directory of mnist-train (no .hydra/overrides.yaml)")
    saved = [o for o in OmegaConf.load(saved_file) if not o.startswith(NOT_SAVED)]
    config = OmegaConf.load(config_file)
    choices = (
        OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.runtime.choices
        if (run / ".hydra" / "hydra.yaml").is_file()
        else {}
    )
    given = [o for o in given if not o.startswith(NOT_SAVED)]
    last = {name_of(o): o for o in parse(given)}  # of a key given twice, Hydra keeps the last
    for o in last.values():
        check_change(o, config, choices, run_dir)
    replaced = set(last)
    merged = [s for s, o in zip(saved, parse(saved)) if name_of(o) not in replaced] + given
    check_not_finished(run, config, parse(merged), run_dir)
    return merged


def check_change(o: Override, config, choices, run_dir: str) -> None:
    key = o.key_or_group
    if o.is_sweep_override():
        raise ConfigError(f"{o.input_line}: a resume continues one run; give one value")
    if key in choices:  # a config group: the run's choice stays
        was = choices.get(key)
        if o.is_delete() or o.value() != was:
            raise ConfigError(
                f"{o.input_line}: the run in {run_dir} was made with {key}={was}; a resume keeps it "
                "(start a new run for another)"
            )
        return
    if changeable(key):
        if key == "trainer.max_epochs" and isinstance(o.value(), int) and o.value() < config.trainer.max_epochs:
            raise ConfigError(
                f"trainer.max_epochs={o.value()}: the run in {run_dir} was set to "
                f"{config.trainer.max_epochs} epochs; a resume may extend it, not shorten it"
            )
        return
    was = OmegaConf.select(config, key, default="(not set)")
    was = OmegaConf.to_container(was) if OmegaConf.is_config(was) else was
    if o.is_delete() or o.value() != was:
        raise ConfigError(
            f"{key}={'(removed)' if o.is_delete() else o.value()}: the run in {run_dir} has "
            f"{key}={was}; a resume keeps what the run computes (start a new run to change it)"
        )


def finished_metrics(run: Path) -> dict | None:
    """The metrics.json of a run that finished; None for one killed before writing it, interrupted or failed."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "ok" else None


def check_not_finished(run: Path, config, merged: list[Override], run_dir: str) -> None:
    metrics = finished_metrics(run)
    if metrics is None:
        return  # the checkpoints tell where it stopped
    given = [o.value() for o in merged if o.key_or_group == "trainer.max_epochs"]
    epochs = given[-1] if given else config.trainer.max_epochs  # the last of repeated overrides is the one Hydra keeps
    if metrics.get("epochs", 0) >= epochs:
        test = f", test accuracy {metrics['test_acc']:.4f}" if metrics.get("test_acc") is not None else ""
        raise Finished(
            f"{run_dir} is finished ({metrics['epochs']} of {epochs} epochs{test}); to train it longer, "
            f"add trainer.max_epochs=<more than {metrics['epochs']}>"
        )


class Finished(Exception):
    """Nothing to resume: said, with exit status 0. Not an error."""
