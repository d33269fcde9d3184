"""Export a trained checkpoint for serving outside this project.

    mnist-export outputs/runs/<run> model.onnx       # a run directory: the checkpoint it tested
    mnist-export path/to/last.ckpt model.pt2         # torch.export's program, by the suffix (or --format pt2)
    mnist-export path/to/last.ckpt model.pt          # TorchScript (deprecated by PyTorch; .pt2 replaces it)

The exported graph takes normalised images (N, 1, 28, 28), as mnist_cnn.data.normalize makes them,
and returns softmax probabilities (N, 10), as predict does.
"""

from __future__ import annotations

import io
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from mnist_cnn.atomic import write_atomically
from mnist_cnn.datasets import DATASETS
from mnist_cnn.saved import load_network, run_checkpoint
from mnist_cnn.errors import UserError

PROG = "mnist-export"
DEPRECATED = {"torchscript": "TorchScript is deprecated by PyTorch; model.pt2 (torch.export) is its successor, "
                             "loaded with torch.export.load(path).module()"}


def export(model, fmt: str, out: Path, shape: tuple[int, int, int] = (1, 28, 28)) -> Path:
    """Exported into a private temporary folder, then written beside the target and renamed: a failed
    export never replaces a good file, and leaves nothing behind. (torch.onnx.export takes a path:
    given a BytesIO, torch 2.14 wrote a file named after the object's repr into the working folder.)"""
    graph = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    example = torch.zeros(2, *shape)  # shape: the dataset's (channels, height, width)
    if fmt == "onnx":
        with tempfile.TemporaryDirectory() as tmp:
            exported = Path(tmp) / "model.onnx"
            torch.onnx.export(graph, (example,), str(exported), input_names=["image"],
                              output_names=["probabilities"], dynamo=False,
                              dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}})
            data = exported.read_bytes()
    else:
        buffer = io.BytesIO()
        if fmt == "pt2":
            batch = torch.export.Dim("batch", min=1)
            torch.export.save(torch.export.export(graph, (example,), dynamic_shapes=({0: batch},)), buffer)
        else:  # torch.jit warns of its deprecation three times; main says it once, naming what replaces it
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
                torch.jit.save(torch.jit.trace(graph, example), buffer)
        data = buffer.getvalue()
    write_atomically(out, data)
    return out


def run(ckpt: str, fmt: str, output: Path | None, suffix: str) -> None:
    """mnist-export, its command line read (mnist_cnn.commands): `fmt` written to `output`, or beside the
    checkpoint with `suffix`."""
    checkpoint = run_checkpoint(ckpt)
    model, data = load_network(checkpoint)
    out = output or checkpoint.with_suffix(suffix)
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if fmt in DEPRECATED:
        print(f"{PROG}: note: {DEPRECATED[fmt]}", file=sys.stderr)
    print(f"wrote {export(model, fmt, out, DATASETS[data['dataset']].shape)}")  # a full disk: the guard's one line
