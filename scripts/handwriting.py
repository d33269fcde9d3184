"""Digits that are not MNIST's, made here without a download, and checkpoints scored on them.

    python scripts/handwriting.py make handwriting.npz          # from the handwriting fonts installed
    python scripts/handwriting.py score handwriting.npz outputs/runs/<run> [more runs or .ckpt files]
    python scripts/handwriting.py score handwriting.npz --group lab_elu RUN... --group handwriting RUN...

`make` renders each digit from every handwriting font it finds (Debian: apt-get install fonts-bwht
fonts-dkg-handwriting fonts-breip fonts-femkeklaver fonts-klee fonts-humor-sans fonts-comic-neue
fonts-dancingscript fonts-kaushanscript fonts-kristi fonts-rufscript fonts-joscelyn fonts-kiloji) at
several sizes, slants and stroke widths, at random positions, light on dark and dark on light; and the
ten digits drawn as pen strokes with random wobble, the way the demo's browser test draws them. Every
image is 64x64, seeded: the same fonts give the same set. `score` reads each image as mnist-predict
reads a file (mnist_cnn.inference.predict.mnist_like) and prints each checkpoint's accuracy, overall and by
source. With --group, runs of one setting over several seeds are one row each: the mean with its 95%
interval, and each group against the first with Welch's interval of the difference (mnist_cnn.reports.intervals),
as the sweep report compares configurations. This is a test set: never choose a model or a setting by its
score; validation does that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mnist_cnn.cli.guard import Parser
from mnist_cnn.inference.loader import load_network
from mnist_cnn.inference.predict import mnist_like, predict
from mnist_cnn.reports.intervals import estimate, welch

FONT_DIRS = ["/usr/share/fonts"]
# Debian's handwriting fonts (file-name stems); others can be named with --fonts
HANDWRITING = (
    "BecauseWe",
    "dkg",
    "Breip",
    "breipfont",
    "femkeklaver",
    "KleeOne",
    "Humor-Sans",
    "ComicNeue",
    "DancingScript",
    "KaushanScript",
    "Kristi",
    "Rufscript",
    "Joscelyn",
    "kiloji",
)
SIZE = 64
SLANTS = (-0.25, 0.0, 0.25)  # horizontal shear
HEIGHTS = (24, 36, 48)  # the digit's rendered height in pixels, before the slant
STROKES = (0, 1, 2)  # extra outline width: thicker strokes

# Each digit as pen strokes in a unit box (x right, y down): polylines, drawn with wobble.
PEN = {
    0: [[(0.5 + 0.32 * np.sin(t), 0.5 - 0.42 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 24)]],
    1: [[(0.35, 0.25), (0.55, 0.08), (0.55, 0.92)]],
    2: [[(0.2, 0.28), (0.35, 0.1), (0.65, 0.1), (0.78, 0.3), (0.6, 0.55), (0.2, 0.9), (0.82, 0.9)]],
    3: [[(0.2, 0.15), (0.7, 0.1), (0.75, 0.3), (0.45, 0.47), (0.78, 0.62), (0.72, 0.88), (0.2, 0.88)]],
    4: [[(0.62, 0.92), (0.62, 0.08), (0.15, 0.65), (0.85, 0.65)]],
    5: [[(0.78, 0.1), (0.28, 0.1), (0.24, 0.45), (0.62, 0.42), (0.78, 0.62), (0.65, 0.88), (0.2, 0.86)]],
    6: [[(0.7, 0.1), (0.35, 0.35), (0.22, 0.7), (0.4, 0.9), (0.7, 0.85), (0.75, 0.62), (0.5, 0.5), (0.25, 0.65)]],
    7: [[(0.18, 0.1), (0.82, 0.1), (0.42, 0.92)]],
    8: [
        [
            (0.5, 0.48),
            (0.25, 0.3),
            (0.5, 0.08),
            (0.75, 0.3),
            (0.5, 0.48),
            (0.22, 0.7),
            (0.5, 0.92),
            (0.78, 0.7),
            (0.5, 0.48),
        ]
    ],
    9: [[(0.75, 0.35), (0.5, 0.1), (0.25, 0.3), (0.5, 0.5), (0.75, 0.35), (0.7, 0.92)]],
}


def handwriting_fonts(extra: list[str]) -> list[Path]:
    found = sorted(
        p
        for d in FONT_DIRS
        for p in Path(d).rglob("*")
        if p.suffix.lower() in (".ttf", ".otf") and p.stem.startswith(HANDWRITING)
    )
    return found + [Path(f) for f in extra]


def has_digits(font: ImageFont.FreeTypeFont) -> bool:
    """All ten digits drawn, and not all the same shape (a missing glyph's box)."""
    masks = [bytes(font.getmask(str(d))) for d in range(10)]
    return all(any(m) for m in masks) and len(set(masks)) == 10


def rendered(
    font_path: Path, digit: int, height: int, slant: float, stroke: int, rng: np.random.Generator
) -> np.ndarray:
    """White on black, SIZE x SIZE: the digit at `height` pixels, slanted, at a random position."""
    font = ImageFont.truetype(str(font_path), size=height)
    left, top, right, bottom = font.getbbox(str(digit), stroke_width=stroke)
    glyph = Image.new("L", (right - left + 8, bottom - top + 8))
    ImageDraw.Draw(glyph).text(
        (4 - left, 4 - top), str(digit), font=font, fill=255, stroke_width=stroke, stroke_fill=255
    )
    w, h = glyph.size
    glyph = glyph.transform(
        (w + int(abs(slant) * h), h),
        Image.Transform.AFFINE,
        (1, slant, -slant * h if slant > 0 else 0, 0, 1, 0),
        Image.Resampling.BILINEAR,
    )
    scale = min(1.0, (SIZE - 4) / max(glyph.size))
    if scale < 1:
        glyph = glyph.resize(
            (max(1, int(glyph.size[0] * scale)), max(1, int(glyph.size[1] * scale))), Image.Resampling.LANCZOS
        )
    canvas = Image.new("L", (SIZE, SIZE))
    x = int(rng.integers(0, SIZE - glyph.size[0] + 1))
    y = int(rng.integers(0, SIZE - glyph.size[1] + 1))
    canvas.paste(glyph, (x, y))
    return np.asarray(canvas)


def penned(digit: int, rng: np.random.Generator) -> np.ndarray:
    """The digit's pen strokes with wobble, a random size, slant, position and pen width."""
    box = rng.uniform(28, 56)
    x0, y0 = rng.uniform(2, SIZE - box - 2, size=2) if box < SIZE - 4 else (2, 2)
    slant = rng.uniform(-0.25, 0.25)
    canvas = Image.new("L", (SIZE, SIZE))
    draw = ImageDraw.Draw(canvas)
    for line in PEN[digit]:
        points = np.array(line) + rng.normal(0, 0.03, size=(len(line), 2))
        xy = [(x0 + (px + slant * (1 - py)) * box * 0.8, y0 + py * box) for px, py in points]
        draw.line(xy, fill=255, width=int(rng.integers(2, 6)), joint="curve")
    return np.asarray(canvas)


def make(out: Path, fonts: list[Path], pen_per_digit: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    images, labels, sources = [], [], []
    used = []
    for path in fonts:
        try:
            if not has_digits(ImageFont.truetype(str(path), size=40)):
                continue
        except OSError:
            continue
        used.append(path.name)
        for digit in range(10):
            for height in HEIGHTS:
                for slant in SLANTS:
                    for stroke in STROKES:
                        images.append(rendered(path, digit, height, slant, stroke, rng))
                        labels.append(digit)
                        sources.append(f"font:{path.stem}")
    for digit in range(10):
        for _ in range(pen_per_digit):
            images.append(penned(digit, rng))
            labels.append(digit)
            sources.append("pen")
    images = np.stack(images)
    dark_on_light = rng.random(len(images)) < 0.5  # half of each source as ink on paper
    images[dark_on_light] = 255 - images[dark_on_light]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # np.savez on a file object: the name stays as given
        np.savez_compressed(
            f,
            images=images,
            labels=np.array(labels, dtype=np.uint8),
            sources=np.array(sources),
            dark_on_light=dark_on_light,
            fonts=np.array(used),
        )
    return {"images": len(images), "fonts": used, "pen": 10 * pen_per_digit}


def score(data: Path, checkpoints: list[str]) -> list[dict]:
    loaded = np.load(data)
    images, labels, sources = loaded["images"], loaded["labels"], loaded["sources"]
    small = torch.from_numpy(np.stack([mnist_like(im.astype(np.float32)) for im in images]))
    kinds = {
        "fonts": np.char.startswith(sources, "font:"),
        "pen": sources == "pen",
        "dark on light": loaded["dark_on_light"],
        "light on dark": ~loaded["dark_on_light"],
    }
    results = []
    for ckpt in checkpoints:
        model, info = load_network(ckpt)
        predicted = torch.cat(
            [predict(model, small[i : i + 1000], info).argmax(dim=1) for i in range(0, len(small), 1000)]
        ).numpy()
        right = predicted == labels
        results.append(
            {
                "checkpoint": ckpt,
                "accuracy": float(right.mean()),
                "images": int(len(right)),
                **{kind: float(right[mask].mean()) for kind, mask in kinds.items() if mask.any()},
            }
        )
    return results


KINDS = ("fonts", "pen", "dark on light", "light on dark")


def compared(results: list[dict], groups: list[list[str]]) -> list[dict]:
    """Each group's mean over its runs, with its 95% interval, and its difference from the first group."""
    by_checkpoint = {r["checkpoint"]: r for r in results}
    kinds = ("accuracy", *(k for k in KINDS if k in results[0]))
    rows, first = [], {}
    for name, *runs in groups:
        row = {"group": name, "runs": len(runs)}
        for kind in kinds:
            e = estimate([by_checkpoint[r][kind] for r in runs])
            row[kind] = {"mean": e.mean, "half_width": e.half_width}
            if kind in first:
                d = welch(e, first[kind])
                row[kind].update(minus_first=d.value, low=d.low, high=d.high, distinguishable=d.distinguishable)
            else:
                first[kind] = e
        rows.append(row)
    return rows


def print_groups(rows: list[dict]) -> None:
    def cell(v: dict) -> str:
        return f"{v['mean']:.4f}" + (f" ± {v['half_width']:.4f}" if v["half_width"] is not None else "")

    kinds = [k for k in KINDS if k in rows[0]]
    print(f"{'group':20} {'runs':>4} {'all':>16} " + " ".join(f"{k:>16}" for k in kinds))
    for row in rows:
        print(
            f"{row['group'][:20]:20} {row['runs']:4} {cell(row['accuracy']):>16} "
            + " ".join(f"{cell(row[k]):>16}" for k in kinds)
        )
    for row in rows[1:]:
        v = row["accuracy"]
        if v["low"] is None:
            verdict = "one run in a group: the spread is unknown"
        else:
            verdict = f"95% interval [{v['low']:+.4f}, {v['high']:+.4f}]: " + (
                "distinguishable" if v["distinguishable"] else "not distinguishable"
            )
        print(f"{row['group']} minus {rows[0]['group']}: {v['minus_first']:+.4f}, {verdict}")


def main() -> None:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make", help="render the set into an .npz file")
    making.add_argument("out", type=Path)
    making.add_argument("--fonts", nargs="*", default=[], help="more font files")
    making.add_argument("--only", nargs="*", help="these font files alone (no search)")
    making.add_argument("--pen", type=int, default=300, help="pen-drawn images per digit (default %(default)s)")
    making.add_argument("--seed", type=int, default=0)
    scoring = commands.add_parser("score", help="each checkpoint's accuracy on the set")
    scoring.add_argument("data", type=Path)
    scoring.add_argument("checkpoints", nargs="*", help="run directories or .ckpt files")
    scoring.add_argument(
        "--group",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "RUN"),
        help="a name and the runs of one setting (several seeds); repeat for each setting",
    )
    scoring.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.command == "make":
        fonts = [Path(f) for f in args.only] if args.only is not None else handwriting_fonts(args.fonts)
        made = make(args.out, fonts, args.pen, args.seed)
        if not made["fonts"]:
            sys.exit(f"handwriting.py: no font with digits found; install the fonts named in {__file__}'s docstring")
        print(
            f"{args.out}: {made['images']} images, {len(made['fonts'])} fonts ({', '.join(made['fonts'])}), "
            f"{made['pen']} pen-drawn"
        )
        return
    if any(len(g) < 2 for g in args.group):
        parser.error("--group takes a name and at least one run")
    checkpoints = list(dict.fromkeys(args.checkpoints + [r for g in args.group for r in g[1:]]))
    if not checkpoints:
        parser.error("give runs or checkpoints to score, or --group NAME RUN...")
    results = score(args.data, checkpoints)
    if args.group:
        rows = compared(results, args.group)
        if args.json:
            print(json.dumps({"runs": results, "groups": rows}, indent=2))
        else:
            print_groups(rows)
        return
    if args.json:
        print(json.dumps(results, indent=2))
        return
    kinds = [k for k in KINDS if k in results[0]]
    print(f"{'checkpoint':50} {'all':>7} " + " ".join(f"{k:>13}" for k in kinds))
    for r in results:
        print(f"{r['checkpoint'][-50:]:50} {r['accuracy']:7.4f} " + " ".join(f"{r[k]:13.4f}" for k in kinds))


if __name__ == "__main__":
    main()
