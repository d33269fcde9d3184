"""optuna-dashboard over a search's stored study, opened in headless Chromium as README shows it: the live view
of a search. The screenshot goes to tmp_path; with MNIST_CNN_SCREENSHOTS=<folder> it is kept there too (docs/
has the one README shows)."""

import os
import shutil
import sys
from pathlib import Path

import browser
import pytest
from processes import free_port, started, wait_for
from runs import train_here
from test_search import SMALL

playwright = browser.playwright()
browser.needs_chromium()


@pytest.mark.slow  # a search, a server and a browser
def test_optuna_dashboard_shows_the_searchs_study(tmp_path, mnist_dir):
    search = train_here("hparams_search=optuna", *SMALL, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path}")
    assert search.returncode == 0, search.stderr[-3000:]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    with started([dashboard, f"sqlite:///{tmp_path / 'optuna.db'}", "--host", "127.0.0.1", "--port", port]):
        wait_for(url)
        with playwright.sync_playwright() as p:
            chromium = browser.launch(p)
            page = chromium.new_page(viewport={"width": 1400, "height": 860})
            page.goto(url, timeout=60_000)
            page.get_by_text("baseline").first.click(timeout=60_000)  # the study, listed by its name
            page.get_by_text("Hyperparameter Importance").first.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)  # the charts drawn
            shot = tmp_path / "optuna-dashboard.png"
            page.screenshot(path=str(shot))
            shown = page.content()
            chromium.close()
    assert "baseline (id=1)" in shown and "Best Trial" in shown and "model.optimizer.lr" in shown, shown[:2000]
    assert shot.stat().st_size > 30_000
    keep = os.environ.get("MNIST_CNN_SCREENSHOTS")
    if keep:
        shutil.copy(shot, os.path.join(keep, "optuna-dashboard.png"))
