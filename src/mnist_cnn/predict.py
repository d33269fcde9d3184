"""Read digits (or, with a Fashion-MNIST checkpoint, clothes) in real images with a trained checkpoint.

    mnist-predict ckpt=outputs/runs/<run>/checkpoints/last.ckpt inputs=[seven.png,scans/]
    mnist-predict ckpt=... inputs=[seven.png] output=json

Each image is prepared the way the checkpoint's dataset was made: grayscale, inverted when the
object is dark on a light background; for MNIST the digit fitted into 20x20 keeping its aspect
ratio, then placed in 28x28 with its centre of mass at the centre; for Fashion-MNIST the object
fitted into 28x28 and centred. Then the checkpoint's own normalisation.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from PIL import Image, UnidentifiedImageError

from mnist_cnn.checkpoints import load_model
from mnist_cnn.cli import CONFIG_PATH, UserError, exit_with, run_hydra
from mnist_cnn.config import check_ranges
from mnist_cnn.data import DATASETS, normalize

PROG = "mnist-predict"
FORMATS = {"PNG", "JPEG", "BMP"}
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def image_files(inputs: list[str]) -> list[Path]:
    """Files as given; folders expand to the images directly inside them, sorted."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"inputs: {path}: no such file or folder")
    if not files:
        raise UserError(f"inputs={list(inputs)}: no PNG, JPEG or BMP images found")
    return files


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
                raise UserError(f"{path}: {width}x{height} pixels is over the limit of {max_pixels} (max_pixels)")
            image.load()
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image (allowed: PNG, JPEG, BMP)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own, larger limit
        raise UserError(f"{path}: refused, decompression bomb ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise UserError(f"{path}: unreadable image ({' '.join(str(exc).split())})") from None
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        background = Image.new("RGBA", image.size, "white")  # transparent pixels are paper, not ink
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
    """Softmax probabilities for uint8 (N, 28, 28) images; data: what load_model says of the checkpoint."""
    with torch.no_grad():
        return model(normalize(images, data["normalize"], data["dataset"])).softmax(dim=1)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def run(cfg: DictConfig) -> None:
    try:
        check_ranges(cfg)
        model, data = load_model(cfg.ckpt)
        files = image_files(list(cfg.inputs))
        placement = PLACEMENT[data["dataset"]]
        images = torch.from_numpy(np.stack([mnist_like(read_gray(f, cfg.max_pixels), f, **placement) for f in files]))
    except (UserError, OmegaConfBaseException) as exc:  # exiting here keeps Hydra from adding lines
        exit_with(PROG, exc)
    probabilities = predict(model, images, data)
    classes = DATASETS[data["dataset"]].classes
    # MNIST results keep their "digit" key; every result names its class
    key = "digit" if data["dataset"] == "mnist" else "class"
    results = [{"file": str(f), key: int(p.argmax()), "label": classes[int(p.argmax())],
                "probability": round(float(p.max()), 6), "probabilities": [round(float(v), 6) for v in p]}
               for f, p in zip(files, probabilities)]
    if cfg.output == "json":
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['file']}: {r['label']} (probability {r['probability']:.4f})")


def main() -> None:
    run_hydra(PROG, run)


if __name__ == "__main__":
    main()
