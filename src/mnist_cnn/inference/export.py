"""Export a trained checkpoint for serving outside this project.

    mnist-export outputs/runs/<run> model.onnx       # a run directory: the checkpoint it tested
    mnist-export path/to/last.ckpt model.pt2         # torch.export's program, by the suffix (or --format pt2)
    mnist-export path/to/last.ckpt model.pt          # TorchScript (deprecated by PyTorch; .pt2 replaces it)

The exported graph stands on its own: it takes what a user has, gray levels 0-255 of 28x28 images (N, 28,
28), a light object on a dark ground as the dataset's are, normalises them inside, and returns softmax
probabilities (N, classes), as mnist-predict does. The file carries its metadata (metadata.json's keys:
the dataset, its class names, the input convention, the preparation mnist-predict applies to a photo,
the run and commit it came from, its test accuracy): ONNX's metadata_props, a .pt2's or .pt's extra file.
docs/export.md has a standalone example that needs onnxruntime, PIL and numpy alone.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from mnist_cnn.atomic import write_atomically
from mnist_cnn.data.datasets import DATASETS
from mnist_cnn.errors import UserError
from mnist_cnn.inference.ensemble import load_models
from mnist_cnn.inference.loader import run_checkpoint

PROG = "mnist-export"
DEPRECATED = {
    "torchscript": "TorchScript is deprecated by PyTorch; model.pt2 (torch.export) is its successor, "
    "loaded with torch.export.load(path).module()"
}


class ReadsGrayLevels(nn.Module):
    """The network as exported: gray levels 0-255 (N, height, width) in, normalised as its training data
    was (mean and std, or x / 255), softmax probabilities out."""

    def __init__(self, net: nn.Module, mean: float, std: float):
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        x = (gray.unsqueeze(1) / 255 - self.mean) / self.std
        return self.net(x).softmax(dim=1)


def exported_graph(net: nn.Module, data: dict) -> ReadsGrayLevels:
    spec = DATASETS[data["dataset"]]
    mean, std = (spec.mean, spec.std) if data["normalize"] == "standard" else (0.0, 1.0)
    return ReadsGrayLevels(net, mean, std).eval()


def metadata(data: dict) -> dict:
    spec = DATASETS[data["dataset"]]
    light = "a light object on a dark ground" if data["dataset"] != "mnist" else "a light digit on a dark ground"
    return {
        "dataset": spec.title,
        "classes": list(spec.classes),
        "input": f"gray levels 0-255, float32, shape (N, {spec.shape[1]}, {spec.shape[2]}), {light}, as "
        f"{spec.title}'s images are; normalised inside the graph",
        "output": f"softmax probabilities, shape (N, {len(spec.classes)}), in the order of classes",
        "preparation": (
            "a photo as mnist-predict prepares it: grayscale; inverted if the border is light; the ground "
            "subtracted; the digit cropped, fitted into 20x20 keeping its aspect ratio, placed in 28x28 "
            "with its centre of mass at the centre (docs/export.md shows it in numpy and PIL)"
            if data["dataset"] == "mnist"
            else "a photo as mnist-predict prepares it: grayscale; inverted if the border is light; the object "
            "fitted into 28x28 and centred"
        ),
        **data["origin"],
    }


def export(net: nn.Module, fmt: str, out: Path, data: dict) -> Path:
    """`net` read back from a checkpoint (`data`: what mnist_cnn.inference.loader.load_network says of it: its dataset,
    normalisation and origin), exported with its normalisation inside and its metadata, into a
    private temporary folder, then written beside the target and renamed: a failed export never replaces a
    good file, and leaves nothing behind. (torch.onnx.export takes a path: given a BytesIO, torch 2.14
    wrote a file named after the object's repr into the working folder.)"""
    graph = exported_graph(net, data)
    shape = DATASETS[data["dataset"]].shape
    example = torch.full((2, shape[1], shape[2]), 0.0)
    described = metadata(data)
    text = json.dumps(described)
    if fmt == "onnx":
        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            exported = Path(tmp) / "model.onnx"
            torch.onnx.export(
                graph,
                (example,),
                str(exported),
                input_names=["gray"],
                output_names=["probabilities"],
                dynamo=False,
                dynamic_axes={"gray": {0: "batch"}, "probabilities": {0: "batch"}},
            )
            model = onnx.load(str(exported))
            for key, value in {"metadata.json": text, **{k: str(v) for k, v in described.items()}}.items():
                model.metadata_props.add(key=key, value=value)
            data_bytes = model.SerializeToString()
    else:
        buffer = io.BytesIO()
        if fmt == "pt2":
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(graph, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, buffer, extra_files={"metadata.json": text})
        else:  # torch.jit warns of its deprecation three times; main says it once, naming what replaces it
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
                torch.jit.save(torch.jit.trace(graph, example), buffer, _extra_files={"metadata.json": text})
        data_bytes = buffer.getvalue()
    write_atomically(out, data_bytes)
    return out


def main(args) -> None:
    """mnist-export, its command line read (mnist_cnn.cli.commands): args.format written to args.output, or
    beside the checkpoint with args.suffix."""
    fmt = args.format
    model, data = load_models(args.ckpts)
    out = Path(args.output) if args.output else run_checkpoint(args.ckpts[0]).with_suffix(args.suffix)
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if fmt in DEPRECATED:
        print(f"{PROG}: note: {DEPRECATED[fmt]}", file=sys.stderr)
    print(f"wrote {export(model, fmt, out, data)}")  # a full disk: the guard's one line
