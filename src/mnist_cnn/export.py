"""Export a trained checkpoint for serving outside this project.

    mnist-export ckpt=outputs/runs/<run>/checkpoints/last.ckpt format=onnx [output=model.onnx]
    mnist-export ckpt=... format=torchscript

The exported graph takes normalised images (N, 1, 28, 28), as mnist_cnn.data.normalize makes them,
and returns softmax probabilities (N, 10), as predict does.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from mnist_cnn.atomic import write_atomically
from mnist_cnn.checkpoints import load_model
from mnist_cnn.cli import CONFIG_PATH, UserError, exit_with, run_hydra
from mnist_cnn.config import check_ranges

PROG = "mnist-export"
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def export(model, fmt: str, out: Path) -> Path:
    """Exported into a private temporary folder, then written beside the target and renamed: a failed
    export never replaces a good file, and leaves nothing behind. (torch.onnx.export takes a path:
    given a BytesIO, torch 2.14 wrote a file named after the object's repr into the working folder.)"""
    graph = nn.Sequential(model.net, nn.Softmax(dim=1)).eval()
    example = torch.zeros(2, 1, 28, 28)
    if fmt == "onnx":
        with tempfile.TemporaryDirectory() as tmp:
            exported = Path(tmp) / "model.onnx"
            torch.onnx.export(graph, (example,), str(exported), input_names=["image"],
                              output_names=["probabilities"], dynamo=False,
                              dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}})
            data = exported.read_bytes()
    else:
        buffer = io.BytesIO()
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(graph, example), buffer)
        data = buffer.getvalue()
    write_atomically(out, data)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def run(cfg: DictConfig) -> None:
    try:
        check_ranges(cfg)
        model, _ = load_model(cfg.ckpt)
        out = Path(cfg.output) if cfg.output else Path(cfg.ckpt).with_suffix(SUFFIXES[cfg.format])
        if not out.parent.is_dir():
            raise UserError(f"output={out}: folder {out.parent} does not exist")
    except (UserError, OmegaConfBaseException) as exc:  # exiting here keeps Hydra from adding lines
        exit_with(PROG, exc)
    try:
        print(f"wrote {export(model, cfg.format, out)}")
    except OSError as exc:  # a full disk, say
        exit_with(PROG, exc, status=1)


def main() -> None:
    run_hydra(PROG, run)


if __name__ == "__main__":
    main()
