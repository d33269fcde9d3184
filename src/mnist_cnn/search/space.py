"""A search's parameters, written in Hydra's sweep grammar (`choice(32, 64)`, `interval(0.0, 0.7)`,
`tag(log, interval(0.05, 3.0))`, `range(1, 5)`), as Optuna's distributions."""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mnist_cnn.errors import ConfigError


def distribution(key: str, text: str) -> BaseDistribution:
    """One parameter's distribution; a value that is not a sweep is one line saying what is allowed."""
    (override,) = OverridesParser.create().parse_overrides([f"{key}={text}"])
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop - value.step, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ConfigError(
        f"hydra.sweeper.params.{key}={text}: expected choice(...), range(...) or interval(...), "
        "optionally tag(log, interval(...))"
    )


def distributions(params: dict[str, str]) -> dict[str, BaseDistribution]:
    """By each parameter's key without Hydra's + or ++ (`++model.net.dense_dropout` is model.net.dense_dropout)."""
    return {key.lstrip("+"): distribution(key, str(text)) for key, text in params.items()}


def override(key: str, value) -> str:
    """The command-line override that gives `key` a sampled value (Hydra's own quoting for strings)."""
    return f"{key}={value}" if not isinstance(value, str) else f"{key}={value!r}"
