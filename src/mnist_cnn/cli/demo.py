"""Draw a digit, or upload a photo, and see what a trained network reads: a local web page (Gradio).

    mnist-demo outputs/runs/<run>              # a run directory (its tested checkpoint) or a .ckpt file
    mnist-demo CKPT --host 0.0.0.0 --port 8000

The page shows the 28x28 image the network is given (prepared as `mnist-predict` prepares a file:
mnist_cnn.inference.predict.mnist_like), the class it reads, its three most probable classes, where it looks
(Integrated Gradients, as mnist-explain draws them) and its first block's feature maps. A blank drawing
or a file that is not an image gets a message, on the page and through the API. A Fashion-MNIST
checkpoint takes uploads and names clothes. The page works with no network at all: no web fonts, no
analytics, nothing fetched from elsewhere. Ctrl-C stops it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from mnist_cnn.data.datasets import DATASETS, normalize
from mnist_cnn.errors import UserError
from mnist_cnn.explain.attributions import explained, feature_maps
from mnist_cnn.inference.ensemble import load_models
from mnist_cnn.inference.predict import PLACEMENT, gray_levels, mnist_like, read_gray

PROG = "mnist-demo"
# Gradio's sketchpad opens with no tool chosen and asks for one: the page chooses the brush once it is there
CHOOSE_BRUSH = """() => {
    const choose = () => {
        const brush = document.querySelector('#sketchpad button[aria-label="Brush"]');
        if (brush) brush.click(); else setTimeout(choose, 100);
    };
    choose();
}"""
PREVIEW_SCALE = 10  # the 28x28 input shown at 280x280, each pixel a visible square
TOP = 3
MAPS = 8  # the first block's feature maps shown
MAX_PIXELS = 25_000_000  # an upload's limit, as mnist-predict's default
NOTHING = (None, None, None, None)


def enlarged(image: np.ndarray, scale: int = PREVIEW_SCALE) -> np.ndarray:
    return np.kron(image, np.ones((scale, scale) + (1,) * (image.ndim - 2), dtype=image.dtype))


def overlay(attribution: np.ndarray) -> np.ndarray:
    """RGB: the attribution on a diverging scale centred at zero (red toward the class read, blue against,
    white none: the blank paper, where Integrated Gradients gives nothing, so the strokes show the digit)."""
    limit = float(np.abs(attribution).max()) or 1.0
    return (255 * colormaps["RdBu_r"]((attribution / limit + 1) / 2)[..., :3]).astype(np.uint8)


def maps_grid(maps: np.ndarray) -> np.ndarray:
    """Feature maps (k, h, w) side by side in one gray image, each scaled to its own range."""
    tiles = []
    for m in maps:
        span = float(m.max() - m.min()) or 1.0
        tiles += [((m - m.min()) / span * 255).astype(np.uint8), np.full((m.shape[0], 1), 255, np.uint8)]
    return np.concatenate(tiles[:-1], axis=1)


def gray_of(image: np.ndarray | dict | None) -> np.ndarray | None:
    """Gray levels 0..255 of what the page sends: gray levels already (an upload, read by read_file), or the
    sketchpad's value (its composite of background and strokes), read as mnist-predict reads a file
    (predict.gray_levels)."""
    if isinstance(image, dict):
        image = image.get("composite")
    if image is None:
        return None
    if isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.float32:
        return image
    return gray_levels(Image.fromarray(np.asarray(image).astype(np.uint8)))


class Reader:
    """A checkpoint's model, reading one image at a time as the page sends it."""

    def __init__(self, ckpts: list[str] | str | None):
        self.model, self.data = load_models(ckpts)
        self.classes = DATASETS[self.data["dataset"]].classes

    def read(self, image) -> tuple:
        """(the 28x28 input, enlarged; {class name: probability}; where it looks; the first block's maps), or
        nothing for an empty canvas. A blank image (the canvas cleared) or one that cannot be read is a
        UserError, which the page and the API say (mnist_cnn.cli.demo.page)."""
        gray = gray_of(image)
        if gray is None:
            return NOTHING
        small = mnist_like(gray, "the drawing", **PLACEMENT[self.data["dataset"]])
        probabilities, maps = explained(self.model, self.data, small[None])
        x = normalize(torch.from_numpy(small[None]), self.data["normalize"], self.data["dataset"])
        shown = getattr(self.model, "members", [self.model])[0]  # an ensemble's: its first network's
        first = feature_maps(shown, x)[0][0, :MAPS].numpy()
        return (
            enlarged(small),
            {name: float(p) for name, p in zip(self.classes, probabilities[0])},
            enlarged(overlay(maps[0, 0].numpy())),  # the class read's
            enlarged(maps_grid(first), 6),
        )

    def read_file(self, path: str | None) -> tuple:
        """An uploaded file, checked as mnist-predict checks one (an image, of a sane size), then read. Its
        mistakes name the file as the user named it, not the server's copy."""
        if path is None:
            return NOTHING
        try:
            return self.read(read_gray(Path(path), MAX_PIXELS))
        except UserError as exc:
            raise UserError(str(exc).replace(str(path), Path(path).name)) from None


def page(reader: Reader):
    import gradio as gr

    digits = reader.data["dataset"] == "mnist"
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
        font_mono=["ui-monospace", "monospace"],
    )
    with gr.Blocks(title="mnist-cnn: draw a digit", analytics_enabled=False) as demo:
        gr.Markdown("## Draw a digit" if digits else "## Upload a photo of a piece of clothing")
        with gr.Row():
            with gr.Column():
                inputs = []  # (component, the name of its API endpoint)
                if digits:
                    with gr.Tab("Draw"):
                        inputs.append(
                            (
                                gr.Sketchpad(
                                    label="Draw with the mouse or a finger",
                                    elem_id="sketchpad",
                                    type="numpy",
                                    image_mode="RGBA",
                                    canvas_size=(280, 280),
                                    fixed_canvas=True,
                                    layers=False,
                                    transforms=(),
                                    brush=gr.Brush(default_size=16, colors=["#000000"], color_mode="fixed"),
                                ),
                                "read_drawing",
                            )
                        )
                with gr.Tab("Upload"):
                    # a file, not gr.Image: Gradio decodes an image itself and answers a file that is not one with
                    # a generic error; read here, it gets mnist-predict's checks and words
                    inputs.append(
                        (
                            gr.File(
                                label="A photo or scan (PNG, JPEG, BMP)",
                                elem_id="upload",
                                file_types=["image"],
                                type="filepath",
                            ),
                            "read_upload",
                        )
                    )
            with gr.Column():
                preview = gr.Image(
                    label="What the network reads (28x28)",
                    elem_id="preview",
                    interactive=False,
                    image_mode="L",
                    height=280,
                    width=280,
                    format="png",
                    buttons=["fullscreen"],
                )
                label = gr.Label(label="Reading", elem_id="reading", num_top_classes=TOP)
                with gr.Row():
                    looks = gr.Image(
                        label="Where it looks: red toward the class read, blue against",
                        elem_id="looks",
                        interactive=False,
                        height=280,
                        width=280,
                        format="png",
                    )
                maps = gr.Image(
                    label=f"What its first block makes of it ({MAPS} feature maps)",
                    elem_id="maps",
                    interactive=False,
                    format="png",
                    image_mode="L",
                )
        for component, endpoint in inputs:
            read = reader.read_file if endpoint == "read_upload" else reader.read
            component.change(
                said(read),
                inputs=component,
                outputs=[preview, label, looks, maps],
                show_progress="hidden",
                api_name=endpoint,
            )
    return demo, theme


def said(read):
    """`read`, with a user's mistake (a blank canvas, a file that is not an image) shown on the page and
    returned through the API as Gradio's error with that message, not logged as a server failure."""
    import gradio as gr

    def answer(value):
        try:
            return read(value)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return answer


def browser_left(record: logging.LogRecord) -> bool:
    """False for the server's report of a browser that closed mid-upload (a tab closed while its drawing
    was on its way): the browser left, nothing failed, and the report is a 60-line traceback."""
    from starlette.requests import ClientDisconnect

    return not (record.exc_info and isinstance(record.exc_info[1], ClientDisconnect))


def main(args) -> None:
    """mnist-demo, its command line parsed (mnist_cnn.cli.commands): serves until Ctrl-C or SIGTERM."""
    reader = Reader(args.ckpts)
    demo, theme = page(reader)
    logging.getLogger("uvicorn.error").addFilter(browser_left)
    try:
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            prevent_thread_lock=True,
            quiet=True,
            share=False,
            ssr_mode=False,
            theme=theme,
            footer_links=[],
            js=CHOOSE_BRUSH,
        )
    except OSError as exc:  # Gradio's words for a port in use or an address it cannot bind
        raise UserError(
            f"--host {args.host} --port {args.port}: cannot listen there ({' '.join(str(exc).split())})"
        ) from None
    # Ctrl-C and SIGTERM (kill, systemd, a closing terminal) stop the server. Set here, not left to Python:
    # a shell starts a job in the background with SIGINT ignored, Python keeps that, and Ctrl-C sent to
    # such a server later did nothing (the test suite's own server, under a suite started with `&`).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    print(
        f"{PROG}: reading with {' '.join(args.ckpts) or 'the model the package carries'} at {demo.local_url} "
        "(Ctrl-C stops)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        demo.close()
        print(f"{PROG}: stopped", file=sys.stderr)
