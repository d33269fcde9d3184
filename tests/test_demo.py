"""mnist-demo as a user meets it: started on a trained checkpoint, driven in headless Chromium, offline.

Screenshots go to tmp_path; with MNIST_CNN_SCREENSHOTS=<folder> they are kept there too (docs/ has the
one README shows)."""

import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest
from browser import launch, needs_chromium
from browser import playwright as import_playwright
from PIL import Image, ImageDraw
from processes import SERVER, free_port, started
from runs import in_process

from mnist_cnn.cli.commands import demo as demo_main
from mnist_cnn.cli.demo import PREVIEW_SCALE, Reader, gray_of
from mnist_cnn.errors import UserError

pytestmark = pytest.mark.slow  # a trained checkpoint, the demo server and a browser

needs_chromium()
LOCAL = ("http://127.0.0.1", "data:", "blob:")


@pytest.fixture(scope="module", autouse=True)
def gradio():
    """Imported when the module's tests run, not when it is collected: the fast tier collects it too, and
    importing Gradio and Playwright took it several seconds."""
    return pytest.importorskip("gradio", reason="pip install -e '.[dev]' brings Gradio")


@pytest.fixture(scope="module")
def playwright():
    return import_playwright()


class Tripwire:
    """A port that counts connections: the demo's HTTP(S) proxy, so that anything it fetches from the
    network (analytics, version checks, fonts) arrives here instead, and is counted."""

    def __init__(self):
        self.server, self.hits = socket.create_server(("127.0.0.1", 0)), 0
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.hits += 1
            connection.close()


@pytest.fixture(scope="module")
def demo():
    """One server for the module's browser tests, as a user leaves it running between digits: `mnist-demo`
    with no checkpoint, as it is after `pip install`, reading with the model the package carries."""
    port, tripwire = free_port(), Tripwire()
    proxy = f"http://127.0.0.1:{tripwire.port}"
    env = {
        **os.environ,
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the demo must turn analytics off itself
    # started with Ctrl-C ignored, as a shell starts a job in the background: the demo stops on it all the same
    ignoring_ctrl_c = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]
    command = [
        *ignoring_ctrl_c,
        sys.executable,
        "-c",
        "from mnist_cnn.cli.commands import demo; demo()",
        "--port",
        port,
    ]
    with started(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        first = first_line(process)
        assert (
            first.strip()
            == f"mnist-demo: reading with the model the package carries at http://127.0.0.1:{port}/ (Ctrl-C stops)"
        ), first + process.stderr.read()[-2000:] if process.poll() is not None else first
        try:
            yield f"http://127.0.0.1:{port}/", tripwire
        finally:
            process.send_signal(2)  # Ctrl-C
            tripwire.server.close()
            out, err = process.communicate(timeout=SERVER)
    assert process.returncode == 0 and err.strip().endswith("mnist-demo: stopped") and "Traceback" not in err, err[
        -2000:
    ]
    assert err.startswith("mnist-demo: no checkpoint given: reading with the model the package carries"), err[:300]


def first_line(process) -> str:
    """The server's first line, or a failure once processes.SERVER seconds have passed without one."""
    ready = select.select([process.stdout], [], [], SERVER)[0]
    assert ready, f"mnist-demo printed nothing within {SERVER:.0f} s"
    return process.stdout.readline()


def browser_page(p, external: list):
    browser = launch(p)
    page = browser.new_page(viewport={"width": 1200, "height": 640})

    def offline(route):
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    return browser, page


def stroke(page, box, points, steps=3):
    """Mouse down at the first point, through the others (`steps` moves to each), up: points as fractions
    of the canvas box. Each move costs the page about 0.2 s on 2 cores."""
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()


def reading(page) -> str:
    """The digit the page reads, once it shows one."""
    label = page.locator("#reading h2, #reading .output-class").first
    label.wait_for(timeout=30_000)
    return label.inner_text().strip()


def preview_pixels(page, url: str) -> np.ndarray:
    """The preview as the page shows it, fetched from the page's own server."""
    src = page.locator("#preview img").first.get_attribute("src")
    data = urllib.request.urlopen(src if src.startswith("http") else url + src.lstrip("/"), timeout=10).read()
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def is_28x28(pixels: np.ndarray) -> bool:
    """280x280 made of 10x10 squares of one level each: the 28x28 input, enlarged."""
    small = pixels[::PREVIEW_SCALE, ::PREVIEW_SCALE]
    return pixels.shape == (280, 280) and np.array_equal(np.kron(small, np.ones((10, 10), dtype=small.dtype)), pixels)


ONE = [(0.52, 0.15), (0.5, 0.5), (0.49, 0.85)]
ZERO = [(0.5 + 0.22 * np.sin(t), 0.5 - 0.33 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 17)]


def test_a_drawn_one_and_zero_are_read_with_their_28x28_input(demo, playwright, tmp_path):
    url, tripwire = demo
    external = []
    with playwright.sync_playwright() as p:
        browser, page = browser_page(p, external)
        page.goto(url, timeout=60_000)
        canvas = page.locator("#sketchpad canvas").first
        canvas.wait_for(timeout=60_000)
        page.locator('#sketchpad button[aria-label="Brush"]').wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # the page's own choice of the brush
        box = canvas.bounding_box()

        stroke(page, box, ONE)
        playwright.expect(page.locator("#reading")).to_contain_text("1", timeout=30_000)
        assert reading(page) == "1"
        one = preview_pixels(page, url)
        assert is_28x28(one) and one.max() > 200 and one[0].max() == 0
        # where the network looks, and its first block's feature maps, beside the reading
        for shown in ("#looks img", "#maps img"):
            page.locator(shown).first.wait_for(timeout=30_000)
            assert page.locator(shown).first.bounding_box()["width"] > 100, shown
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

        page.locator('#sketchpad button[aria-label="Clear canvas"]').click()
        page.wait_for_timeout(500)
        page.locator('#sketchpad button[aria-label="Brush"]').click()
        stroke(page, box, ZERO, steps=1)  # a 16-sided ring
        playwright.expect(page.locator("#reading h2, #reading .output-class").first).to_have_text("0", timeout=30_000)
        zero = preview_pixels(page, url)
        assert is_28x28(zero) and zero[140, 140] < 100 < zero.max()  # a ring: dark in the middle
        browser.close()
    assert external == [] and tripwire.hits == 0, (external, tripwire.hits)
    keep = os.environ.get("MNIST_CNN_SCREENSHOTS")
    if keep:
        shutil.copy(tmp_path / "demo.png", os.path.join(keep, "demo.png"))


def test_an_uploaded_photo_is_read(demo, playwright, tmp_path):
    """A 7 written dark on light paper, as a phone would photograph it."""
    url, tripwire = demo
    photo = Image.new("RGB", (600, 800), (235, 230, 220))
    ImageDraw.Draw(photo).line([(170, 220), (430, 220), (290, 640)], fill=(30, 30, 40), width=34)
    photo.save(tmp_path / "seven.jpg")
    external = []
    with playwright.sync_playwright() as p:
        browser, page = browser_page(p, external)
        page.goto(url, timeout=60_000)
        page.get_by_role("tab", name="Upload").click()
        page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "seven.jpg"))
        playwright.expect(page.locator("#reading h2, #reading .output-class").first).to_have_text("7", timeout=30_000)
        assert is_28x28(preview_pixels(page, url))
        browser.close()
    assert external == [] and tripwire.hits == 0, (external, tripwire.hits)


def test_the_api_names_its_endpoints_by_what_they_read(demo):
    url, _ = demo
    info = json.loads(urllib.request.urlopen(url + "gradio_api/info", timeout=10).read())
    assert {"/read_drawing", "/read_upload"} <= set(info["named_endpoints"]), info["named_endpoints"].keys()


def test_the_api_answers_a_file_that_is_not_an_image_with_a_message(demo, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _ = demo
    (tmp_path / "notes.png").write_text("a shopping list")
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match=r"notes.png: not an image \(allowed: PNG, JPEG, BMP\)"):
        client.predict(handle_file(str(tmp_path / "notes.png")), api_name="/read_upload")


def test_a_browser_that_leaves_mid_upload_is_not_an_error(demo):
    """A tab closed while its drawing uploads: the server keeps quiet and keeps reading (the module's
    server checks its console for tracebacks when it stops)."""
    url, _ = demo
    port = int(url.rsplit(":", 1)[1].strip("/"))
    boundary = "mnistdemo"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="d.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + 100_000}\r\n\r\n".encode()
            + head
            + b"\x89PNG" * 100
        )
    # the server is still there, and still answers
    assert urllib.request.urlopen(url, timeout=10).status == 200


def test_the_reader_takes_sketchpad_layers_and_says_a_blank_canvas_or_a_file_that_is_no_image(trained_run, tmp_path):
    reader = Reader(str(trained_run))
    blank = np.zeros((280, 280, 4), dtype=np.uint8)  # transparent: paper
    with pytest.raises(UserError, match=r"^the drawing: no digit found \(the image is blank\)$"):
        reader.read({"background": blank, "layers": [blank], "composite": blank})
    assert reader.read(None) == (None, None, None, None)
    drawn = blank.copy()
    drawn[40:240, 130:150] = (0, 0, 0, 255)  # a black bar on the transparent canvas
    assert gray_of({"composite": drawn})[100, 140] == 0 and gray_of({"composite": drawn})[0, 0] == 255
    preview, probabilities, looks, maps = reader.read({"composite": drawn})
    assert preview.shape == (280, 280) and set(probabilities) == {str(d) for d in range(10)}
    assert abs(sum(probabilities.values()) - 1) < 1e-5
    assert (
        looks.shape == (280, 280, 3) and maps.ndim == 2 and maps.shape[0] == 6 * 12
    )  # the baseline's block: 64 maps of 12x12
    (tmp_path / "notes.png").write_text("a shopping list")
    with pytest.raises(UserError, match=r"^notes.png: not an image \(allowed: PNG, JPEG, BMP\)$"):
        reader.read_file(str(tmp_path / "notes.png"))


def test_a_bad_checkpoint_is_one_line_and_no_server(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    result = in_process(demo_main, str(bad), "--port", str(free_port()))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"mnist-demo: error: {bad}: refused, not a checkpoint")


def test_a_port_in_use_is_one_line(trained_run):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = in_process(demo_main, str(trained_run), "--port", str(port))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"--port {port}: cannot listen there" in result.stderr
