"""Read digits (or, with a Fashion-MNIST checkpoint, clothes) in real images with a trained checkpoint.

    mnist-predict outputs/runs/<run> seven.png scans/      # a run directory: the checkpoint it tested
    mnist-predict path/to/epoch=9-step=20.ckpt seven.png --json

Each image is prepared the way the checkpoint's dataset was made: grayscale, inverted when the
object is dark on a light background; for MNIST the digit fitted into 20x20 keeping its aspect
ratio, then placed in 28x28 with its centre of mass at the centre; for Fashion-MNIST the object
fitted into 28x28 and centred. Then the checkpoint's own normalisation.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mnist_cnn.data.datasets import DATASETS, normalize
from mnist_cnn.errors import UserError
from mnist_cnn.inference.ensemble import load_models

PROG = "mnist-predict"
FORMATS = {"PNG", "JPEG", "BMP"}
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def image_files(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files as given; folders expand to the images directly inside them, sorted. And a line for each
    input that gave no image."""
    files, problems = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
            files += found
            if not found:
                problems.append(f"{path}: no PNG, JPEG or BMP images in this folder")
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def read_gray(path: Path, max_pixels: int) -> np.ndarray:
    """The image as float32 gray levels 0..255, refusing anything that is not a sane image."""
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.format not in FORMATS:
                raise UserError(f"{path}: {image.format} images are not accepted (allowed: PNG, JPEG, BMP)")
            width, height = image.size
            if width * height > max_pixels:  # checked from the header, before decoding anything
                raise UserError(f"{path}: {width}x{height} pixels is over the limit of {max_pixels} (--max-pixels)")
            image.load()
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image (allowed: PNG, JPEG, BMP)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own, larger limit
        raise UserError(f"{path}: refused, decompression bomb ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise UserError(f"{path}: unreadable image ({' '.join(str(exc).split())})") from None
    return gray_levels(image)


def gray_levels(image: Image.Image) -> np.ndarray:
    """float32 gray levels 0..255 of a decoded image; transparent pixels are paper, not ink."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        background = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32)


# How each dataset placed its objects: MNIST in a 20x20 box centred by centre of mass (LeCun et al.);
# Fashion-MNIST's longest edge resized to 28, centred (Xiao et al., 2017, section 2).
PLACEMENT = {"mnist": {"box": 20, "by_mass": True}, "fashion_mnist": {"box": 28, "by_mass": False}}


def mnist_like(gray: np.ndarray, path: Path | str = "image", box: int = 20, by_mass: bool = True) -> np.ndarray:
    """uint8 28x28, white object on black, fitted into box x box and centred (by centre of mass)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # dark digit on light paper; MNIST is light on dark
        gray, border = 255 - gray, 255 - border
    gray = np.clip(gray - np.median(border), 0, None)  # the paper becomes 0
    if gray.max() <= 0:
        raise UserError(f"{path}: no {'digit' if by_mass else 'object'} found (the image is blank)")
    ink = gray > 0.2 * gray.max()
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    digit = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = box / max(digit.shape)
    size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
    fitted = Image.fromarray(digit / digit.max() * 255).resize(size, Image.Resampling.LANCZOS)
    fitted = np.clip(np.asarray(fitted, dtype=np.float32), 0, 255)
    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - fitted.shape[0]) // 2, (28 - fitted.shape[1]) // 2
    canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    if not by_mass:
        return np.rint(canvas).astype(np.uint8)
    mass = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(28)).sum() / mass
    cx = (canvas.sum(axis=0) * np.arange(28)).sum() / mass
    # MNIST's centre of mass sits at pixel (14, 14); shift within the 4-pixel margin the 20x20 box leaves
    dy = int(np.clip(round(14 - cy), -top, 28 - top - fitted.shape[0]))
    dx = int(np.clip(round(14 - cx), -left, 28 - left - fitted.shape[1]))
    canvas = np.roll(canvas, (dy, dx), axis=(0, 1))
    return np.rint(canvas).astype(np.uint8)


def predict(model, images: torch.Tensor, data: dict) -> torch.Tensor:
    """Softmax probabilities for uint8 (N, 28, 28) images; data: what mnist_cnn.inference.loader.load_network says of the checkpoint."""
    with torch.no_grad():
        return model(normalize(images, data["normalize"], data["dataset"])).softmax(dim=1)


def prepared(inputs: list[str], max_pixels: int, dataset: str) -> tuple[list[Path], list[np.ndarray], list[str]]:
    """The files a command line names (folders expanded), each prepared as `dataset`'s images were made:
    (the files read, their uint8 images, a line for each input that gave none)."""
    files, problems = image_files(inputs)
    read, images = [], []
    for f in files:
        try:
            images.append(mnist_like(read_gray(f, max_pixels), f, **PLACEMENT[dataset]))
            read.append(f)
        except UserError as exc:
            problems.append(str(exc))
    return read, images, problems


def say_problems(prog: str, problems: list[str]) -> None:
    """Each unreadable input's line on stderr; exit status 1 if there was any (the others were answered)."""
    for problem in problems:
        print(f"{prog}: error: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)


def main(args) -> None:
    """mnist-predict, its command line parsed (mnist_cnn.cli.commands): every readable image is predicted; each
    one that is not gets its own line on stderr, and the exit status is 1 if there was any."""
    model, data = load_models(args.ckpts)
    read, images, problems = prepared(args.inputs, args.max_pixels, data["dataset"])
    results = []
    if images:
        probabilities = predict(model, torch.from_numpy(np.stack(images)), data)
        classes = DATASETS[data["dataset"]].classes
        key = "digit" if data["dataset"] == "mnist" else "class"  # MNIST results keep their "digit" key
        results = [
            {
                "file": str(f),
                key: int(p.argmax()),
                "label": classes[int(p.argmax())],
                "probability": round(float(p.max()), 6),
                "probabilities": [round(float(v), 6) for v in p],
            }
            for f, p in zip(read, probabilities)
        ]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['file']}: {r['label']} (probability {r['probability']:.4f})")
    say_problems(PROG, problems)
