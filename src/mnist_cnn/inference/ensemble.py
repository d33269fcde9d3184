"""Several trained networks read as one: their softmax probabilities averaged, which is what an ensemble of
a few independently trained networks gains its accuracy from (README, "Beyond the lab").

    mnist-predict outputs/runs/a outputs/runs/b outputs/runs/c seven.png     # three runs' tested checkpoints
    mnist-predict outputs/multirun/2026-12-07_21-03-18 seven.png             # every job of a multirun

Every command that reads digits takes an ensemble where it takes a checkpoint: predict, explain, export, the
demo and mnist-test. The ensemble's output is the log of the members' mean probability, so the softmax that
each of those applies to a network's logits gives the mean probability itself, and gradients (explain's
Integrated Gradients) flow through every member."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from mnist_cnn.errors import UserError
from mnist_cnn.inference.loader import load_network, run_record
from mnist_cnn.multirun import is_multirun, job_folders


class Ensemble(nn.Module):
    """Networks that read the same images, as one network whose softmax is their mean softmax."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.stack([member(x).float().log_softmax(dim=1) for member in self.members])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))


def members_of(paths: list[str | Path]) -> list[Path]:
    """Checkpoints and run folders as given; a multirun folder stands for its jobs' run folders, in job order."""
    found = []
    for given in map(Path, paths):
        if is_multirun(given) and not run_record(given) and not any(given.glob("*.ckpt")):
            jobs = job_folders(given)
            if not jobs:
                raise UserError(f"{given}: a multirun folder with no finished job (no */metrics.json) in it")
            found += jobs
        else:
            found.append(given)
    return found


def load_models(paths: list[str | Path] | str | Path | None) -> tuple[nn.Module, dict]:
    """The network (for several checkpoints, their Ensemble) in eval mode, and what mnist_cnn.inference.loader.load_network
    says of it; for an ensemble, "origin" lists each member's under "members". None or []: the model the package
    carries; one path alone may be given as it is. Its members must have read one dataset with one normalisation: the images are prepared once."""
    if not paths:
        return load_network(None)
    members = members_of([paths] if isinstance(paths, (str, Path)) else paths)
    if len(members) == 1:
        return load_network(members[0])
    loaded = [load_network(path) for path in members]
    first = loaded[0][1]
    for path, (_, data) in zip(members[1:], loaded[1:]):
        for key in ("dataset", "normalize"):
            if data[key] != first[key]:
                raise UserError(
                    f"{path}: its {key} is {data[key]}, {members[0]}'s is {first[key]}; an ensemble's networks "
                    f"must share their dataset and normalisation"
                )
    origin = {"run": None, "commit": None, "test_acc": None, "members": [data["origin"] for _, data in loaded]}
    return Ensemble([net for net, _ in loaded]).eval(), {**first, "origin": origin}
