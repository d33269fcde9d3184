"""TensorBoard over a 3-job multirun, as a user opens it: `tensorboard --logdir`, in headless Chromium, its
scalars and its Projector (each run's last hidden layer).

The screenshot goes to tmp_path; with MNIST_CNN_SCREENSHOTS=<folder> it is kept there too (docs/ has the
one README shows)."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import browser
import pytest
from processes import SERVER, free_port, started
from runs import train_here

pytestmark = pytest.mark.slow  # a sweep, a server and a browser

playwright = browser.playwright()
browser.needs_chromium()


def test_runs_are_named_by_their_overrides_with_train_and_val_accuracy_on_one_chart(tmp_path, mnist_dir):
    sweep = tmp_path / "sweep"
    result = train_here(
        "-m",
        "data.batch_size=32,64,128",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=1",
        "callbacks.progress_bar.refresh_rate=0",
        "figures=false",  # the scalars and the Projector are what is looked at here
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(
        [sys.executable, "-m", "tensorboard.main", "--logdir", sweep, "--host", "127.0.0.1", "--port", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ):
        deadline = time.monotonic() + SERVER
        while True:
            try:
                runs = json.loads(urllib.request.urlopen(f"{url}/data/runs", timeout=2).read())
                if len(runs) == 3:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"TensorBoard did not list the 3 runs within {SERVER:.0f} s"
            time.sleep(0.3)
        for job, batch in enumerate((32, 64, 128)):  # the job's folder, then what it changed; nothing repeated
            (label,) = [run for run in runs if run.startswith(f"{job}/")]
            assert label.startswith(f"{job}/baseline/data.batch_size={batch}/trainer.max_epochs=3/"), label
            assert "tensorboard" not in label, label

        with playwright.sync_playwright() as p:
            chromium = browser.launch(p)
            page = chromium.new_page(viewport={"width": 1400, "height": 820})
            page.goto(f"{url}/#custom_scalars", timeout=60_000)
            page.get_by_text("train and validation").wait_for(timeout=60_000)
            # accuracy and loss, each 3 runs x (train, val)
            playwright.expect(page.get_by_text("Matches (6)")).to_have_count(2, timeout=60_000)
            # Polymer's shadow DOM: locators see into it, inner_text does not
            for title in ("accuracy", "loss"):
                assert page.get_by_text(title, exact=True).count() >= 1
            for job, batch in enumerate((32, 64, 128)):
                assert page.get_by_text(f"{job}/baseline/data.batch_size={batch}/").count() >= 1
            shot = tmp_path / "tensorboard.png"
            deadline = time.monotonic() + 60
            while page.locator("path.line").count() < 12:  # 2 charts x 3 runs x (train, val), drawn
                assert time.monotonic() < deadline, "the charts drew no lines within 60 s"
                page.wait_for_timeout(500)
            page.wait_for_timeout(1000)  # the last lines' transitions
            page.screenshot(path=str(shot))

            # the Projector: each run's last hidden layer, 1,000 test digits labelled by class
            listed = json.loads(urllib.request.urlopen(f"{url}/data/plugin/projector/runs", timeout=30).read())
            assert len(listed) == 3, listed
            info = json.loads(
                urllib.request.urlopen(f"{url}/data/plugin/projector/info?run={listed[0]}", timeout=30).read()
            )
            (embedding,) = info["embeddings"]
            assert embedding["tensorShape"] == [1000, 128] and embedding["sprite"]["singleImageDim"] == [28, 28]
            page.goto(f"{url}/#projector", timeout=60_000)
            projector = page.frame_locator("iframe").frame_locator("iframe")  # the plugin's page, in its own frame
            projector.get_by_text("Points: 1000").first.wait_for(timeout=90_000)
            assert projector.get_by_text("Dimension: 128").count() >= 1
            page.wait_for_timeout(3000)  # PCA and the sprites drawn
            page.screenshot(path=str(tmp_path / "projector.png"))
            chromium.close()
    assert shot.stat().st_size > 10_000 and (tmp_path / "projector.png").stat().st_size > 10_000
    keep = os.environ.get("MNIST_CNN_SCREENSHOTS")
    if keep:
        shutil.copy(shot, os.path.join(keep, "tensorboard.png"))
        shutil.copy(tmp_path / "projector.png", os.path.join(keep, "projector.png"))
