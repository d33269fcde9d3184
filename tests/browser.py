"""Debian's Chromium, headless, driven by Playwright: the pages of the demo, TensorBoard and MLflow as a user
opens them. Playwright's own browser download does not work where only package registries are reachable."""

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# no background traffic: the machine's closed network refuses it, many connections at a time
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def needs_chromium() -> None:
    """Skips the calling module where there is no Chromium (.ci/run installs it)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium: apt-get install chromium (.ci/run installs it)", allow_module_level=True)


def playwright():
    return pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' brings Playwright")


def launch(p):
    """A headless Chromium from a playwright.sync_playwright() context."""
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
