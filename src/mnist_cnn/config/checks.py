"""Checks of a composed mnist-train config, before any download, data loading or training: each key's
range and closed set (from the schema's metadata), the rules that tie keys together, the machine and
the folders; and trainer.precision=auto's policy."""

from __future__ import annotations

import inspect
import tempfile
from dataclasses import fields, is_dataclass
from typing import Any

import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ValidationError

from mnist_cnn.config.keys import choices_of
from mnist_cnn.config.overrides import expected
from mnist_cnn.config.signature import arguments_of, import_class, schema_of
from mnist_cnn.data.datasets import DATASETS, default_data_dir
from mnist_cnn.data.fetch import OFFICIAL_SHA256, raw_dir
from mnist_cnn.data.module import train_size
from mnist_cnn.errors import ConfigError, needs
from mnist_cnn.suggest import did_you_mean
from mnist_cnn.training.graphed import obstacle


def allowed(rule: dict, integer: bool = False) -> str:
    """What a rule allows, in words."""
    if "allowed" in rule:
        return rule["allowed"]
    if "choices" in rule:
        return "one of " + ", ".join("null" if c is None else str(c) for c in choices_of(rule))
    low = (f"> {rule['gt']}" if "gt" in rule else f">= {rule['ge']}") if {"gt", "ge"} & set(rule) else ""
    high = (f"< {rule['lt']}" if "lt" in rule else f"<= {rule['le']}") if {"lt", "le"} & set(rule) else ""
    return ("an integer " if integer else "a number ") + " and ".join(b for b in (low, high) if b)


def obeys(value: Any, rule: dict) -> bool:
    if "test" in rule:
        return rule["test"](value)
    if "choices" in rule:
        return value in choices_of(rule)
    if value is None:
        return True
    values = list(value) if isinstance(value, (list, ListConfig)) else [value]
    return all(
        ("ge" not in rule or v >= rule["ge"])
        and ("gt" not in rule or v > rule["gt"])
        and ("le" not in rule or v <= rule["le"])
        and ("lt" not in rule or v < rule["lt"])
        for v in values
    )


def check_ranges(cfg: DictConfig, prefix: str = "") -> None:
    """Every key whose schema sets a range or a closed set, recursively; the first bad one is an error."""
    schema = OmegaConf.get_type(cfg)
    declared = {f.name: f for f in fields(schema)} if is_dataclass(schema) else {}
    rules = {name: f.metadata for name, f in declared.items()}
    for name in cfg:
        if name == "hydra":  # Hydra's own, checked by Hydra
            continue
        value = OmegaConf.select(cfg, str(name), throw_on_missing=False)
        if isinstance(value, DictConfig):
            check_ranges(value, f"{prefix}{name}.")
        elif rules.get(name) and {"ge", "gt", "le", "lt", "choices", "test"} & set(rules[name]):
            if not obeys(value, rules[name]):
                shown = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
                integer = "int" in str(declared[name].type)
                choices = [str(c) for c in choices_of(rules[name]) if c is not None]
                raise ConfigError(
                    f"{prefix}{name}={shown} is not allowed: expected {allowed(rules[name], integer)}"
                    + (did_you_mean(str(shown), choices, n=1, prefix=f"{prefix}{name}=") if choices else "")
                )


def type_network(cfg: DictConfig) -> None:
    """model.net, typed in place by its class's constructor (mnist_cnn.config.signature): every argument with
    its default where the YAML gives none. A key the constructor does not take, a value of the wrong type and
    an argument with neither value nor default are each one line."""
    node = cfg.model.get("net")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(
            'model.net: no network; a model\'s YAML names its class as net._target_ (README, "A network of your own")'
        )
    cls = import_class(node._target_, "model.net")
    declared = arguments_of(cls)
    for name in node:
        if name != "_target_" and name not in declared:
            raise ConfigError(
                f"model.net.{name} is not an argument of {node._target_} (it takes "
                f"{', '.join(declared) or 'none'}){did_you_mean(str(name), declared, n=1, prefix='model.net.')}"
            )
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema_of(cls)), node)
    except ValidationError as exc:
        value = "null" if exc.value is None else exc.value
        raise ConfigError(f"model.net.{exc.full_key}={value} is not allowed: expected {expected(exc)}") from None
    for name in OmegaConf.missing_keys(typed):
        raise ConfigError(
            f"model.net.{name}: {cls.__name__} has no default for it; give it a value in the "
            f"model's YAML or as model.net.{name}=..."
        )
    cfg.model.net = typed


def check_train(cfg: DictConfig) -> None:
    """mnist-train's config, whole, before any download, data loading or training: the network's keys, each
    key's range, then the rules that tie keys together, the machine and the folders."""
    type_network(cfg)
    if (cfg.logger or {}).get("mlflow") is not None:
        needs("mlflow", "tracking", "logger=mlflow")
    check_ranges(cfg)
    data, trainer, optimizer = cfg.data, cfg.trainer, cfg.model.optimizer
    images = DATASETS[data.dataset].train_images
    n_train = train_size(images, data.validation_split)
    if n_train < data.batch_size:
        raise ConfigError(
            f"data.validation_split={data.validation_split} leaves {n_train} training images, fewer "
            f"than one batch (data.batch_size={data.batch_size}): lower one of them"
        )
    if n_train == images:
        raise ConfigError(f"data.validation_split={data.validation_split} leaves no validation images: raise it")
    accepted = inspect.signature(getattr(torch.optim, optimizer.name)).parameters
    for name, value in optimizer.items():
        if name != "name" and value is not None and name not in accepted:
            raise ConfigError(
                f"model.optimizer.{name}={value} is not an argument of torch.optim.{optimizer.name} "
                f"(it takes {', '.join(p for p in accepted if p != 'params')}); "
                f"unset it with model.optimizer.{name}=null"
            )
    schedule = cfg.model.schedule
    if schedule.one_cycle and schedule.decay:
        raise ConfigError(
            f"model.schedule.one_cycle=true and model.schedule.decay={schedule.decay}: two schedules; "
            "set decay=0 or one_cycle=false"
        )
    for epoch in cfg.get("read_epochs") or []:
        if not 1 <= epoch <= trainer.max_epochs:
            raise ConfigError(
                f"read_epochs={list(cfg.read_epochs)}: {epoch} is not an epoch of this run "
                f"(allowed: 1 to trainer.max_epochs={trainer.max_epochs})"
            )
    if cfg.get("read_epochs") and cfg.callbacks.get("checkpoint") is None:
        raise ConfigError("read_epochs needs callbacks.checkpoint: each reading is the checkpoint it keeps as best")
    check_accelerator(trainer.accelerator, trainer.devices)
    check_precision(trainer.precision, trainer.accelerator)
    check_cuda_graph(cfg)
    check_experiment_data()
    check_data_folder(data.data_dir, data.dataset)


def check_experiment_data() -> None:
    """experiment_data is optional, so that an <experiment>_<data> pair may have no file; Hydra then
    skips even an option typed by hand, which must not pass unnoticed."""
    if not GlobalHydra.instance().is_initialized():
        return  # composed outside an app (the tests' compose API): no repository to look in
    chosen = HydraConfig.get().runtime.choices.get("experiment_data")
    options = GlobalHydra.instance().config_loader().get_group_options("experiment_data")
    if f"experiment_data={chosen}" in HydraConfig.get().overrides.task and chosen not in options:
        raise ConfigError(
            f"experiment_data={chosen} is not a known option: expected one of {', '.join(options)} "
            "(it is chosen for you, as <experiment>_<data>, where such a file exists)"
        )


def bf16_native(device: str) -> bool:
    """Whether the device computes bf16 faster than float32: a CUDA GPU from Ampere on; a CPU with AMX tiles
    (oneDNN's bf16 kernels run on them), or an AMD CPU with AVX-512 BF16 (Zen 4 on), where the lab's epoch was
    measured faster in bf16. An Intel CPU with AVX-512 BF16 but no AMX enabled was measured slower in bf16
    (docs/performance.md, "What follows the fit"), and elsewhere bf16 is emulated."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    capability = torch._C._cpu._get_cpu_capability() if hasattr(torch._C, "_cpu") else {}
    if device != "cpu":
        return False
    return bool(capability.get("amx_bf16")) or bool(capability.get("avx512_bf16")) and cpu_vendor() == "AuthenticAMD"


def cpu_vendor() -> str | None:
    """The CPU's vendor as Linux names it (GenuineIntel, AuthenticAMD); None where /proc/cpuinfo is not."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("vendor_id")), None)
    except OSError:
        return None


def native_precision(precision: str, accelerator: str) -> str:
    """trainer.precision=auto as Lightning's precision: bf16-mixed where the device that `accelerator`
    picks computes bf16 natively, else 32-true (the lab's arithmetic). bf16-mixed keeps the weights,
    the optimiser and the loss in float32 and runs convolutions and matrix products in bf16; on the
    lab's two runs it cost no accuracy beyond the seed-to-seed spread (docs/performance.md)."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if bf16_native(device_of(accelerator)) else "32-true"


def device_of(accelerator: str) -> str:
    """The device type trainer.accelerator picks here: auto is a CUDA GPU where there is one, gpu is cuda."""
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return {"gpu": "cuda"}.get(accelerator, accelerator)


def check_cuda_graph(cfg: DictConfig) -> None:
    """callbacks.speed.cuda_graph=true where no graph can be captured is refused, not ignored."""
    speed, trainer = (cfg.callbacks or {}).get("speed"), cfg.trainer
    if speed is None or not speed.get("cuda_graph"):
        return
    one_device = trainer.num_nodes == 1 and (
        trainer.devices == 1 or (trainer.devices == "auto" and torch.cuda.device_count() <= 1)
    )
    reason = obstacle(
        device_of(trainer.accelerator),
        one_device,
        speed.compile,
        native_precision(trainer.precision, trainer.accelerator),
        cfg.model.optimizer.name,
    )
    if reason:
        raise ConfigError(f"callbacks.speed.cuda_graph=true: {reason}; or leave it null (on wherever it can run)")


def check_precision(precision: str, accelerator: str) -> None:
    """float16 mixed precision on a CPU is refused: Lightning would warn twice and run bf16-mixed instead."""
    if device_of(accelerator) == "cpu" and precision in ("16", "16-mixed"):
        raise ConfigError(
            f"trainer.precision={precision}: float16 mixed precision is for GPUs; on a CPU use "
            f"trainer.precision=bf16-mixed (what auto picks here: {native_precision('auto', 'cpu')}) "
            "or 32-true"
        )


def check_accelerator(accelerator: str, devices: Any) -> None:
    if accelerator in ("gpu", "cuda"):
        visible = torch.cuda.device_count()
        if not visible:
            raise ConfigError(
                f"trainer.accelerator={accelerator}: no GPU is visible here (torch.cuda.is_available() "
                "is false); use trainer.accelerator=auto, which takes a GPU where there is one"
            )
        if isinstance(devices, int) and devices > visible:
            raise ConfigError(f"trainer.devices={devices}: only {visible} GPU(s) visible here")
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: no Apple GPU here; use trainer.accelerator=auto")
    elif accelerator == "tpu":
        from lightning.pytorch.accelerators import XLAAccelerator

        if not XLAAccelerator.is_available():
            raise ConfigError("trainer.accelerator=tpu: no TPU here; use trainer.accelerator=auto")


def check_data_folder(data_dir: str | None, dataset: str) -> None:
    """The dataset's four files are there (read-only is fine), or their folder can be made and written:
    found now, before a Trainer is built, rather than when the first download is written."""
    spec, given = DATASETS[dataset], data_dir or default_data_dir()
    raw = raw_dir(given, spec.folder).absolute()
    if all((raw / name).is_file() for name in OFFICIAL_SHA256):
        return  # checked byte for byte when the data module loads them
    existing = next(p for p in (raw, *raw.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"data.data_dir={given}: cannot be a folder, {existing} is a file")
    try:  # os.access says yes to root everywhere; a real file says what the filesystem allows
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise ConfigError(
            f"data.data_dir={given}: {spec.title} must be fetched into {raw}, which cannot be written ({exc.strerror})"
        ) from None
