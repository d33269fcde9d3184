"""A trained network read back from a checkpoint, without Lightning or Hydra: what predict, export, the
demo and MLflow's model use. torch.load(weights_only=True) admits tensors and plain containers only,
so a crafted checkpoint cannot run code; the network is rebuilt from its class name and arguments."""

from __future__ import annotations

import inspect
import json
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from mnist_cnn.datasets import DATASETS
from mnist_cnn.errors import UserError
from mnist_cnn.networks import NETWORKS, renumbered

# The model the package carries, for predict, explain and the demo without a checkpoint of one's own:
# experiment=handwriting's network, made by scripts/bundle_model.py (its provenance: docs/bundled.md).
BUNDLED = "bundled/handwriting.ckpt"
BUNDLED_SHA256 = "e86f0573b12368a4020f3db3f3caf64c531b08855a0d4f02adea720919e79cd3"


def bundled() -> Path:
    return Path(str(resources.files("mnist_cnn") / BUNDLED))


def load_network(path: str | Path | None) -> tuple[nn.Module, dict]:
    """The network in eval mode, and what its training data was: {"dataset": a key of
    mnist_cnn.datasets.DATASETS, "normalize": standard or unit}, from the data module's
    hyperparameters in the checkpoint, and "origin": where it came from (see `origin`). None: the model the
    package carries."""
    path = run_checkpoint(path) if path is not None else bundled()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"{path}: refused, not a checkpoint that loads as plain weights ({type(exc).__name__}: {reason})")
    marker = checkpoint.get("mnist_cnn") if isinstance(checkpoint, dict) else None
    if not isinstance(marker, dict) or marker.get("model") not in NETWORKS:
        raise UserError(f"{path}: not an mnist-cnn checkpoint (expected one written by mnist-train)")
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    data = {"dataset": data.get("dataset", "mnist"), "normalize": data.get("normalize", "standard"),
            "origin": checkpoint.get("origin") or origin(path)}
    net = NETWORKS[marker["model"]](**arguments(marker, checkpoint.get("hyper_parameters", {}), data["dataset"]))
    weights = renumbered(checkpoint["state_dict"], net)
    net.load_state_dict({k[len("net."):]: v for k, v in weights.items() if k.startswith("net.")})
    return net.eval(), data


def arguments(marker: dict, hparams: dict, dataset: str) -> dict:
    """The network's arguments: as the checkpoint names them, or, in one written before the networks were
    plain modules, among the model's hyperparameters, with the schema's default for a key it predates
    and the dataset's shape and class count."""
    if "network" in marker:
        return {k: tuple(v) if k == "input_shape" else v for k, v in marker["network"].items()}
    cls = NETWORKS[marker["model"]]
    taken = inspect.signature(cls).parameters
    given = {k: v for k, v in hparams.items() if k in taken}
    missing = [k for k in taken if k not in given and k not in ("input_shape", "num_classes")]
    if missing:  # the schema's defaults; Hydra and OmegaConf only for such an old checkpoint
        from mnist_cnn.config.schema import model_schema

        defaults = model_schema(cls)()
        given.update({k: getattr(defaults, k) for k in missing})
    spec = DATASETS[dataset]
    return {**given, "input_shape": spec.shape, "num_classes": len(spec.classes)}


def origin(path: Path) -> dict:
    """Where a run's checkpoint came from: its run folder, the commit of the code that trained it and the
    run's test accuracy, from the metrics.json of the run that holds it (None where there is none). A
    bundled checkpoint carries its own (mnist_cnn.bundled)."""
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    metrics = run_record(run)
    return {"run": str(run.resolve()) if metrics else None,
            "commit": (metrics.get("provenance") or {}).get("git_commit"), "test_acc": metrics.get("test_acc")}


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
