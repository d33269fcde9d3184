"""The command lines of mnist-predict, mnist-explain, mnist-export, mnist-demo and mnist-report, parsed
before anything heavy is imported: `--help` and a mistaken argument answer at once, and the work (torch,
the network, a web server) is imported after. Each command runs inside the one guard (mnist_cnn.cli.guard.guarded).
mnist-train's command line is Hydra's: mnist_cnn.cli.train. Predict, explain and the demo read with the
model the package carries (mnist_cnn.inference.loader.BUNDLED) when no checkpoint is given, and say so."""

from __future__ import annotations

import sys
from pathlib import Path

from mnist_cnn.cli.guard import Parser, guarded, positive_int
from mnist_cnn.errors import UserError, needs

CKPT_HELP = (
    "a checkpoint written by mnist-train, or a run directory (the checkpoint its test used); "
    "left out: the model the package carries"
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def is_checkpoint(path: Path) -> bool:
    """A .ckpt file, a run folder, or a file that is not an image: what a command's first path names as its model."""
    run_folder = path.is_dir() and (
        (path / "metrics.json").exists()
        or (path / ".hydra").is_dir()
        or any(path.glob("*.ckpt"))
        or (path / "checkpoints").is_dir()
    )
    return path.suffix == ".ckpt" or run_folder or (path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES)


def checkpoint_and_images(paths: list[str]) -> tuple[str | None, list[str]]:
    """A command line's optional checkpoint, then its images: the first path is the checkpoint unless it is an
    image or a folder of images."""
    if is_checkpoint(Path(paths[0])):
        return paths[0], paths[1:]
    return None, paths


def with_bundled_model(prog: str, ckpt: str | None) -> None:
    if ckpt is None:
        print(
            f"{prog}: no checkpoint given: reading with the model the package carries (experiment=handwriting; "
            "docs/bundled.md)",
            file=sys.stderr,
        )


SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt"}  # mnist-export's formats


def predict(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="mnist-predict",
        description="Read digits (or clothes, with a Fashion-MNIST checkpoint) in "
        "image files. Each image is prepared as the checkpoint's dataset was made (see mnist_cnn.inference.predict).",
    )
    images_and_checkpoint(p)
    p.add_argument("--json", action="store_true", help="print JSON with every class's probability")
    args = parsed_with_checkpoint(p, argv)
    with guarded(p.prog):
        from mnist_cnn.inference import predict as reading

        reading.main(args)


def explain(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="mnist-explain",
        description="For each image, a figure: the image as the network reads it, where "
        "it looks (Integrated Gradients from a blank image: red toward the class it reads, blue against), and "
        "its three likeliest classes.",
    )
    images_and_checkpoint(p)
    p.add_argument(
        "--out", default=".", metavar="DIR", help="where the figures go, <image>.explained.png (default: here)"
    )
    p.add_argument("--json", action="store_true", help="print JSON: each prediction and its 28x28 attribution map")
    args = parsed_with_checkpoint(p, argv)
    with guarded(p.prog):
        from mnist_cnn.explain import command as explaining

        explaining.main(args)


def images_and_checkpoint(p: Parser) -> None:
    p.add_argument(
        "paths",
        metavar="[CKPT] IMAGE_OR_FOLDER",
        nargs="+",
        help=f"{CKPT_HELP}; then PNG, JPEG or BMP files, and folders of them",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=25_000_000,
        metavar="N",
        help="refuse larger images before decoding them (decompression bombs; default %(default)s)",
    )


def parsed_with_checkpoint(p: Parser, argv: list[str] | None):
    args = p.parse_args(argv)
    args.ckpt, args.inputs = checkpoint_and_images(args.paths)
    if not args.inputs:
        p.error(f"the following arguments are required: IMAGE_OR_FOLDER ({args.ckpt} is the model: which images?)")
    with_bundled_model(p.prog, args.ckpt)
    return args


def export(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="mnist-export",
        description="Export a trained checkpoint as ONNX, a torch.export program (.pt2) "
        "or TorchScript: normalised images (N, 1, 28, 28) in, softmax probabilities (N, 10) out.",
    )
    p.add_argument("ckpt", metavar="CKPT", help=CKPT_HELP)
    p.add_argument("output", metavar="OUTPUT", nargs="?", help="the file to write (default: beside the checkpoint)")
    p.add_argument(
        "--format", choices=tuple(SUFFIXES), help="default: by OUTPUT's suffix (.onnx, .pt2, .pt), else onnx"
    )
    args = p.parse_args(argv)
    by_suffix = {suffix: fmt for fmt, suffix in SUFFIXES.items()}
    with guarded(p.prog):
        if args.format is None and args.output and Path(args.output).suffix not in by_suffix:
            raise UserError(
                f"{args.output}: the format cannot be told from the suffix {Path(args.output).suffix!r} "
                "(.onnx, .pt2 or .pt); add --format onnx, pt2 or torchscript"
            )
        args.format = args.format or (by_suffix[Path(args.output).suffix] if args.output else "onnx")
        args.suffix = SUFFIXES[args.format]
        from mnist_cnn.inference import export as exporting

        exporting.main(args)


def demo(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="mnist-demo",
        description="A local web page: draw a digit (or upload a photo) and see what the network reads.",
    )
    p.add_argument("ckpt", metavar="CKPT", nargs="?", help=CKPT_HELP)
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default %(default)s: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="the port (default %(default)s)")
    args = p.parse_args(argv)
    with guarded(p.prog):
        needs("gradio", "demo", "mnist-demo")
    with_bundled_model(p.prog, args.ckpt)
    with guarded(p.prog):
        from mnist_cnn.cli import demo as page

        page.main(args)


def report(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="mnist-report",
        description="A multirun directory: write its report (summary.md, summary.csv, a plot per swept "
        "setting) and print it. Run directories: the same report of them, in their common folder or --out.",
    )
    p.add_argument("dirs", metavar="DIR", nargs="+", help="a multirun directory, or run directories")
    p.add_argument("--out", metavar="DIR", help="where single runs' report goes (default: their common folder)")
    args = p.parse_args(argv)
    with guarded(p.prog):
        from mnist_cnn.reports import sweep as reporting

        reporting.main(args)
