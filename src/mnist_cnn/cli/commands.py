"""The command lines of mnist-predict, mnist-explain, mnist-export, mnist-demo, mnist-test and mnist-report, parsed
before anything heavy is imported: `--help` and a mistaken argument answer at once, and the work (torch,
the network, a web server) is imported after. Each command runs inside the one guard (mnist_cnn.cli.guard.guarded).
mnist-train's command line is Hydra's: mnist_cnn.cli.train. Predict, explain and the demo read with the
model the package carries (mnist_cnn.inference.loader.BUNDLED) when no checkpoint is given, and say so; given
several, they read with their ensemble (mnist_cnn.inference.ensemble)."""

from __future__ import annotations

import sys
from pathlib import Path

from mnist_cnn.cli.guard import Parser, guarded, positive_int
from mnist_cnn.errors import UserError, needs

CKPT_HELP = (
    "a checkpoint written by mnist-train, or a run directory (the checkpoint its test used); several, or a "
    "multirun directory: their ensemble (probabilities averaged); left out: the model the package carries"
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def is_checkpoint(path: Path, first: bool = True) -> bool:
    """What a command's first path names as its model: a .ckpt file, a run or multirun folder, a folder holding
    a .ckpt, or a file that is not an image. A later path is one of an ensemble's only if it is plainly a
    checkpoint: a .ckpt file or a run or multirun folder (a folder of images that also holds a .ckpt, or a GIF,
    is an input, refused as one)."""
    run_folder = path.is_dir() and (
        (path / "metrics.json").exists()
        or (path / ".hydra").is_dir()
        or (path / "multirun.yaml").exists()
        or (path / "checkpoints").is_dir()
    )
    if path.suffix == ".ckpt" or run_folder:
        return True
    return first and (
        (path.is_dir() and any(path.glob("*.ckpt"))) or (path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES)
    )


def checkpoints_and_images(paths: list[str]) -> tuple[list[str], list[str]]:
    """A command line's checkpoints (none, one, or an ensemble's), then its images: the paths up to the first
    image or folder of images."""
    count = next((i for i, path in enumerate(paths) if not is_checkpoint(Path(path), first=i == 0)), len(paths))
    return paths[:count], paths[count:]


def with_bundled_model(prog: str, ckpts: list[str]) -> None:
    if not ckpts:
        print(
            f"{prog}: no checkpoint given: reading with the model the package carries (experiment=best; "
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
        metavar="[CKPT ...] IMAGE_OR_FOLDER",
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
    args.ckpts, args.inputs = checkpoints_and_images(args.paths)
    if not args.inputs:
        p.error(
            f"the following arguments are required: IMAGE_OR_FOLDER ({' '.join(args.ckpts)} "
            f"{'is the model' if len(args.ckpts) == 1 else 'are the models'}: which images?)"
        )
    with_bundled_model(p.prog, args.ckpts)
    return args


def export(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="mnist-export",
        description="Export a trained checkpoint as ONNX, a torch.export program (.pt2) "
        "or TorchScript: normalised images (N, 1, 28, 28) in, softmax probabilities (N, 10) out.",
    )
    p.add_argument("paths", metavar="CKPT [CKPT ...] [OUTPUT]", nargs="+", help=f"{CKPT_HELP.rpartition(';')[0]}")
    p.add_argument(
        "--format", choices=tuple(SUFFIXES), help="default: by OUTPUT's suffix (.onnx, .pt2, .pt), else onnx"
    )
    args = p.parse_args(argv)
    by_suffix = {suffix: fmt for fmt, suffix in SUFFIXES.items()}
    last = Path(args.paths[-1])
    names_output = len(args.paths) > 1 and (last.suffix in by_suffix or not is_checkpoint(last))
    args.ckpts, args.output = (args.paths[:-1], args.paths[-1]) if names_output else (args.paths, None)
    with guarded(p.prog):
        if len(args.ckpts) > 1 and args.output is None:
            raise UserError("several checkpoints: name the file to write their ensemble to, after them")
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
    p.add_argument("ckpts", metavar="CKPT", nargs="*", help=CKPT_HELP)
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default %(default)s: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="the port (default %(default)s)")
    args = p.parse_args(argv)
    with guarded(p.prog):
        needs("gradio", "demo", "mnist-demo")
    with_bundled_model(p.prog, args.ckpts)
    with guarded(p.prog):
        from mnist_cnn.cli import demo as page

        page.main(args)


def test(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="mnist-test",
        description="Score a checkpoint, or an ensemble of several, on its dataset's test set, and write the report "
        "a run writes for its test: test.json, the classification report, the confusion matrix, the most "
        "confident mistakes.",
    )
    p.add_argument("ckpts", metavar="CKPT", nargs="+", help=CKPT_HELP.rpartition(";")[0])
    p.add_argument("--out", metavar="DIR", help="where the report goes (default: a run folder's test/; several runs: test-<names> in "
                   "their common folder; checkpoint files: test-<names> here)")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR", help="the folder that holds the dataset (default: as mnist-train)")
    args = p.parse_args(argv)
    with guarded(p.prog):
        from mnist_cnn.reports import test_set

        test_set.main(args)


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
