"""mnist-predict on real images, and on everything it must refuse."""

import json
import os
import pathlib
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from runs import in_process, metrics_of
from torchvision.datasets import MNIST

from mnist_cnn.cli import commands
from mnist_cnn.data.module import normalize
from mnist_cnn.inference.loader import load_network, run_checkpoint

pytestmark = pytest.mark.slow  # a trained checkpoint


def predict_cli(*args: str) -> subprocess.CompletedProcess:
    return in_process(commands.predict, *args)  # the installed command runs in test_package


def test_predictions_on_rendered_real_digits_agree_with_the_model(tmp_path, trained_run, mnist_dir):
    """200 test digits saved as PNG: upscaled 2-5x onto larger, non-square sheets, a third of them
    inverted to dark-on-light, a fifth as RGB; read back through the MNIST-style preparation."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    digits = MNIST(mnist_dir, train=False).data[:200]
    folder = tmp_path / "digits"
    folder.mkdir()
    for i, digit in enumerate(digits.numpy()):
        scale = 2 + i % 4
        digit_image = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
        image = Image.new("L", (28 * scale + 17 * (i % 3), 28 * scale + 9 * (i % 2)), 0)
        image.paste(digit_image, (11 * (i % 3), 5 * (i % 2)))
        if i % 3 == 0:
            image = Image.fromarray(255 - np.asarray(image))
        if i % 5 == 0:
            image = image.convert("RGB")
        image.save(folder / f"{i:03d}.png")
    result = predict_cli(str(ckpt), str(folder), "--json")
    assert result.returncode == 0, result.stderr
    predicted = [r["digit"] for r in json.loads(result.stdout)]
    model, data = load_network(ckpt)
    with torch.no_grad():
        reference = model(normalize(digits, data["normalize"])).argmax(dim=1).tolist()
    agreement = sum(p == r for p, r in zip(predicted, reference, strict=True)) / 200
    assert agreement >= 0.98, agreement


def test_text_output_names_each_file(tmp_path, trained_run, mnist_dir):
    Image.fromarray(MNIST(mnist_dir, train=False).data[0].numpy()).save(tmp_path / "seven.bmp")
    result = predict_cli(str(trained_run / "checkpoints" / "last.ckpt"), str(tmp_path / "seven.bmp"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{tmp_path / 'seven.bmp'}: 7 (probability ")


def test_plain_paths_a_run_directory_and_a_folder_with_one_blank_image(tmp_path, trained_run, mnist_dir, capsys):
    """As users type it: Lightning's checkpoint names hold '=', paths may hold spaces; a run directory
    stands for the checkpoint its test used; one bad image does not stop the others."""
    named = tmp_path / "my runs" / "epoch=0-step=100.ckpt"
    named.parent.mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", named)
    folder = tmp_path / "scans, 2026"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(MNIST(mnist_dir, train=False).data[i].numpy()).save(folder / f"{i} digit=x.png")
    Image.new("L", (60, 60), 255).save(folder / "3 blank.png")
    for ckpt in (named, trained_run):
        with pytest.raises(SystemExit) as exit_info:
            commands.predict([str(ckpt), str(folder), "--json"])
        out, err = capsys.readouterr()
        assert exit_info.value.code == 1
        assert [r["file"] for r in json.loads(out)] == [str(folder / f"{i} digit=x.png") for i in range(3)]
        assert err.strip() == f"mnist-predict: error: {folder / '3 blank.png'}: no digit found (the image is blank)"
    best = metrics_of(trained_run)["best_checkpoint"]
    assert run_checkpoint(trained_run) == pathlib.Path(best)


def test_help_describes_predicts_own_options():
    result = predict_cli("--help")
    assert result.returncode == 0 and "IMAGE_OR_FOLDER" in result.stdout and "--json" in result.stdout
    assert "model=" not in result.stdout and "Hydra" not in result.stdout


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: what a decompression bomb looks like from its header."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def bad_inputs(tmp_path, trained_run):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    (tmp_path / "notes.png").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "big.png").write_bytes(png_header_only(6_000, 6_000))
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    Image.new("L", (100, 100), 255).save(tmp_path / "blank.png")
    Image.new("L", (8, 8)).save(tmp_path / "tiny.gif")
    torch.save({"state_dict": {}, "epoch": 1}, tmp_path / "other.ckpt")
    torch.save({"evil": Payload(tmp_path / "pwned")}, tmp_path / "evil.ckpt")
    return {  # case: (arguments, exit status, the line said)
        "missing file": ([ckpt, tmp_path / "absent.png"], 1, "absent.png: no such file or folder"),
        "non-image": ([ckpt, tmp_path / "notes.png"], 1, "notes.png: not an image"),
        "empty file": ([ckpt, tmp_path / "empty.png"], 1, "empty.png: empty file"),
        "pixel limit": ([ckpt, tmp_path / "big.png"], 1, "6000x6000 pixels is over the limit of 25000000"),
        "decompression bomb": ([ckpt, tmp_path / "bomb.png"], 1, "bomb.png: refused, decompression bomb"),
        "blank image": ([ckpt, tmp_path / "blank.png"], 1, "no digit found"),
        "other format": ([ckpt, tmp_path / "tiny.gif"], 1, "GIF images are not accepted"),
        "missing checkpoint": (
            [tmp_path / "none.ckpt", tmp_path],
            2,
            "none.ckpt: no such checkpoint file or run directory",
        ),
        "foreign checkpoint": ([tmp_path / "other.ckpt", tmp_path], 2, "not an mnist-cnn checkpoint"),
        "malicious checkpoint": ([tmp_path / "evil.ckpt", tmp_path], 2, "refused"),
        "bad option": ([ckpt, tmp_path / "blank.png", "--max-pixels", "0"], 2, "argument --max-pixels: invalid"),
        "no images given": ([ckpt], 2, "the following arguments are required: IMAGE_OR_FOLDER"),
    }


CASES = [
    "missing file",
    "non-image",
    "empty file",
    "pixel limit",
    "decompression bomb",
    "blank image",
    "other format",
    "missing checkpoint",
    "foreign checkpoint",
    "malicious checkpoint",
    "bad option",
    "no images given",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_in_one_line(tmp_path, trained_run, case, monkeypatch, capsys):
    args, status, expected = bad_inputs(tmp_path, trained_run)[case]
    with pytest.raises(SystemExit) as exit_info:  # in-process: the suite's time, not the CLI's
        commands.predict([str(a) for a in args])
    out, err = capsys.readouterr()
    assert exit_info.value.code == status, err
    err = err.strip()
    assert err.startswith("mnist-predict: error: ") and "\n" not in err, err
    assert expected in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "pwned").exists()  # the crafted checkpoint ran nothing
