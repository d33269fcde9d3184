"""Draw a digit, or upload a photo, and see what a trained network reads: a local web page (Gradio).

    mnist-demo outputs/runs/<run>              # a run directory (its tested checkpoint) or a .ckpt file
    mnist-demo CKPT --host 0.0.0.0 --port 8000

The page shows the 28x28 image the network is given (prepared as `mnist-predict` prepares a file:
mnist_cnn.predict.mnist_like), the class it reads, and its three most probable classes. A Fashion-MNIST
checkpoint takes uploads and names clothes. The page works with no network at all: no web fonts, no
analytics, nothing fetched from elsewhere. Ctrl-C stops it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import numpy as np
import torch
from PIL import Image

from mnist_cnn.saved import load_network
from mnist_cnn.errors import UserError
from mnist_cnn.datasets import DATASETS
from mnist_cnn.predict import PLACEMENT, gray_levels, mnist_like, predict

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


def gray_of(image: np.ndarray | dict | None) -> np.ndarray | None:
    """Gray levels 0..255 of what the page sends: an uploaded image, or the sketchpad's value (its
    composite of background and strokes), read as mnist-predict reads a file (predict.gray_levels)."""
    if isinstance(image, dict):
        image = image.get("composite")
    if image is None:
        return None
    return gray_levels(Image.fromarray(np.asarray(image).astype(np.uint8)))


class Reader:
    """A checkpoint's model, reading one image at a time as the page sends it."""

    def __init__(self, ckpt: str):
        self.model, self.data = load_network(ckpt)
        self.classes = DATASETS[self.data["dataset"]].classes

    def read(self, image) -> tuple[np.ndarray | None, dict | None]:
        """(the 28x28 input, enlarged; {class name: probability}), or (None, None) for a blank image."""
        gray = gray_of(image)
        if gray is None:
            return None, None
        try:
            small = mnist_like(gray, "the drawing", **PLACEMENT[self.data["dataset"]])
        except UserError:  # blank: nothing drawn yet, or cleared
            return None, None
        probabilities = predict(self.model, torch.from_numpy(small[None]), self.data)[0]
        preview = np.kron(small, np.ones((PREVIEW_SCALE, PREVIEW_SCALE), dtype=np.uint8))
        return preview, {name: float(p) for name, p in zip(self.classes, probabilities)}


def page(reader: Reader):
    import gradio as gr

    digits = reader.data["dataset"] == "mnist"
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
                              font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title="mnist-cnn: draw a digit", analytics_enabled=False) as demo:
        gr.Markdown("## Draw a digit" if digits else "## Upload a photo of a piece of clothing")
        with gr.Row():
            with gr.Column():
                inputs = []  # (component, the name of its API endpoint)
                if digits:
                    with gr.Tab("Draw"):
                        inputs.append((gr.Sketchpad(
                            label="Draw with the mouse or a finger", elem_id="sketchpad", type="numpy",
                            image_mode="RGBA", canvas_size=(280, 280), fixed_canvas=True, layers=False,
                            transforms=(), brush=gr.Brush(default_size=16, colors=["#000000"], color_mode="fixed")),
                            "read_drawing"))
                with gr.Tab("Upload"):
                    inputs.append((gr.Image(label="A photo or scan", elem_id="upload", type="numpy",
                                            sources=["upload", "clipboard"], image_mode="RGBA"), "read_upload"))
            with gr.Column():
                preview = gr.Image(label="What the network reads (28x28)", elem_id="preview", interactive=False,
                                   image_mode="L", height=280, width=280, format="png", buttons=["fullscreen"])
                label = gr.Label(label="Reading", elem_id="reading", num_top_classes=TOP)
        for component, endpoint in inputs:
            component.change(reader.read, inputs=component, outputs=[preview, label], show_progress="hidden",
                             api_name=endpoint)
    return demo, theme


def browser_left(record: logging.LogRecord) -> bool:
    """False for the server's report of a browser that closed mid-upload (a tab closed while its drawing
    was on its way): the browser left, nothing failed, and the report is a 60-line traceback."""
    from starlette.requests import ClientDisconnect

    return not (record.exc_info and isinstance(record.exc_info[1], ClientDisconnect))


def run(args) -> None:
    """mnist-demo, its command line parsed (mnist_cnn.commands): serves until Ctrl-C or SIGTERM."""
    reader = Reader(args.ckpt)
    demo, theme = page(reader)
    logging.getLogger("uvicorn.error").addFilter(browser_left)
    try:
        demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, quiet=True,
                    share=False, ssr_mode=False, theme=theme, footer_links=[], js=CHOOSE_BRUSH)
    except OSError as exc:  # Gradio's words for a port in use or an address it cannot bind
        raise UserError(f"--host {args.host} --port {args.port}: cannot listen there "
                        f"({' '.join(str(exc).split())})") from None
    # Ctrl-C and SIGTERM (kill, systemd, a closing terminal) stop the server. Set here, not left to Python:
    # a shell starts a job in the background with SIGINT ignored, Python keeps that, and Ctrl-C sent to
    # such a server later did nothing (the test suite's own server, under a suite started with `&`).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    print(f"{PROG}: reading with {args.ckpt} at {demo.local_url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        demo.close()
        print(f"{PROG}: stopped", file=sys.stderr)

