"""scripts/handwriting.py: the non-MNIST digit set, made from a font every install has, and scored."""

import importlib.util
import json
import subprocess

import numpy as np
import pytest
from matplotlib import font_manager
from runs import ROOT, in_process

pytestmark = pytest.mark.slow  # a trained checkpoint, and a set rendered twice


SPEC = importlib.util.spec_from_file_location("handwriting", ROOT / "scripts" / "handwriting.py")
SCRIPT = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(SCRIPT)


def handwriting(*args: str) -> subprocess.CompletedProcess:
    """`python scripts/handwriting.py ARGS`, in this process."""
    return in_process(SCRIPT.main, *args)


def test_the_set_is_rendered_and_any_checkpoint_scored_on_it(tmp_path, trained_run):
    font = font_manager.findfont("DejaVu Sans")  # matplotlib's own copy
    made = handwriting("make", str(tmp_path / "set.npz"), "--only", font, "--pen", "2")
    assert made.returncode == 0, made.stderr[-2000:]
    data = np.load(tmp_path / "set.npz")
    per_font = 10 * 3 * 3 * 3  # digits x heights x slants x stroke widths
    assert data["images"].shape == (per_font + 20, 64, 64) and data["images"].dtype == np.uint8
    assert np.bincount(data["labels"]).tolist() == [per_font // 10 + 2] * 10
    assert 0.3 < data["dark_on_light"].mean() < 0.7 and list(data["fonts"]) == ["DejaVuSans.ttf"]
    again = handwriting("make", str(tmp_path / "again.npz"), "--only", font, "--pen", "2")
    assert again.returncode == 0 and np.array_equal(np.load(tmp_path / "again.npz")["images"], data["images"])

    scored = handwriting("score", str(tmp_path / "set.npz"), str(trained_run), "--json")
    assert scored.returncode == 0, scored.stderr[-2000:]
    (result,) = json.loads(scored.stdout)
    assert result["images"] == per_font + 20 and set(result) >= {"accuracy", "fonts", "pen", "dark on light"}
    assert 0.3 < result["accuracy"] <= 1  # a briefly trained baseline reads a printed font's digits, mostly

    grouped = handwriting(
        "score",
        str(tmp_path / "set.npz"),
        "--group",
        "one",
        str(trained_run),
        "--group",
        "twice",
        str(trained_run),
        str(trained_run),
        "--json",
    )
    assert grouped.returncode == 0, grouped.stderr[-2000:]
    one, twice = json.loads(grouped.stdout)["groups"]
    assert (one["runs"], twice["runs"]) == (1, 2) and one["accuracy"]["half_width"] is None
    assert twice["accuracy"]["mean"] == result["accuracy"] and twice["accuracy"]["half_width"] == 0
    assert twice["accuracy"]["minus_first"] == 0 and twice["accuracy"]["low"] is None  # one run: no spread
    refused = handwriting("score", str(tmp_path / "set.npz"), "--group", "empty")
    assert refused.returncode == 2 and "--group takes a name and at least one run" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
