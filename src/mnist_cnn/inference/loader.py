"""A trained network read back from a checkpoint, without Lightning or Hydra: what predict, export, the
demo and MLflow's model use. torch.load(weights_only=True) admits tensors and plain containers only,
so a crafted checkpoint cannot run code; the network is rebuilt from the import path and arguments it names
(which imports that module: a checkpoint names code to import, as a YAML's _target_ does)."""

from __future__ import annotations

import importlib
import json
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from mnist_cnn.errors import UserError
from mnist_cnn.models.networks import NETWORKS

# The model the package carries, for predict, explain and the demo without a checkpoint of one's own:
# experiment=best's network, made by scripts/bundle_model.py (its provenance: docs/bundled.md).
BUNDLED = "bundled/best.ckpt"
BUNDLED_SHA256 = "4666ac8550cac80ed104ec211720e05bc2706f8cad7e967a10a2c1c76ca15a5d"


def bundled() -> Path:
    return Path(str(resources.files("mnist_cnn") / BUNDLED))


def load_network(path: str | Path | None) -> tuple[nn.Module, dict]:
    """The network in eval mode, and what its training data was: {"dataset": a key of
    mnist_cnn.data.datasets.DATASETS, "normalize": standard or unit}, from the data module's
    hyperparameters in the checkpoint, and "origin": where it came from (see `origin`). None: the model the
    package carries. The network is rebuilt from the import path and arguments the checkpoint names: a network
    of one's own must be importable (its folder on PYTHONPATH) where the checkpoint is read."""
    path = run_checkpoint(path) if path is not None else bundled()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UserError(
            f"{path}: refused, not a checkpoint that loads as plain weights ({type(exc).__name__}: {reason})"
        ) from None
    marker = checkpoint.get("mnist_cnn") if isinstance(checkpoint, dict) else None
    if not isinstance(marker, dict) or "network" not in marker:
        raise UserError(
            f"{path}: not an mnist-cnn checkpoint (expected one written by mnist-train"
            + (", since 2026-11-26; retrain it" if isinstance(marker, dict) else "")
            + ")"
        )
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    data = {
        "dataset": data.get("dataset", "mnist"),
        "normalize": data.get("normalize", "standard"),
        "origin": checkpoint.get("origin") or origin(path),
    }
    cls = network_class(marker, path)
    arguments = {k: tuple(v) if k == "input_shape" else v for k, v in marker["network"].items()}
    try:
        net = cls(**arguments)
        net.load_state_dict({k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")})
    except (TypeError, ValueError, RuntimeError) as exc:  # the class changed since the checkpoint was written
        reason = " ".join(str(exc).split())[:300]
        raise UserError(
            f"{path}: its weights do not fit {cls.__module__}.{cls.__qualname__} as that class is now "
            f"({type(exc).__name__}: {reason})"
        ) from None
    return net.eval(), data


def network_class(marker: dict, path: Path) -> type:
    """The class a checkpoint's network is an instance of: by its import path (the package's networks by name
    in checkpoints written before they had one)."""
    if "target" not in marker:
        if marker.get("model") not in NETWORKS:
            raise UserError(f"{path}: names no network class mnist-cnn knows ({marker.get('model')})")
        return NETWORKS[marker["model"]]
    module, _, name = marker["target"].rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        if module.startswith("mnist_cnn.") and marker.get("model") in NETWORKS:  # the package's, since moved
            return NETWORKS[marker["model"]]
        raise UserError(
            f"{path}: its network is {marker['target']}, which cannot be imported here ({exc}); put "
            "the folder of its module on PYTHONPATH, or install its package"
        ) from None


def origin(path: Path) -> dict:
    """Where a run's checkpoint came from: its run folder, the commit of the code that trained it and the
    run's test accuracy, from the metrics.json of the run that holds it (None where there is none). A
    bundled checkpoint carries its own (mnist_cnn.bundled)."""
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    metrics = run_record(run)
    return {
        "run": str(run.resolve()) if metrics else None,
        "commit": (metrics.get("provenance") or {}).get("git_commit"),
        "test_acc": metrics.get("test_acc"),
    }


def run_record(run: Path) -> dict:
    """A run folder's metrics.json; {} where there is none or it is not a record."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def run_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given; for a run directory, the checkpoint its test used (metrics.json's
    best_checkpoint), else the newest one under it, a best one before last.ckpt."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"{path}: no such checkpoint file or run directory")
    best = Path(run_record(path).get("best_checkpoint") or "")
    if best.name and best.is_file():
        return best
    found = sorted(path.rglob("*.ckpt"), key=lambda p: (not p.name.startswith("last"), p.stat().st_mtime_ns))
    if not found:
        raise UserError(f"{path}: a folder with no checkpoint (*.ckpt) in it")
    return found[-1]
