"""mnist-export: ONNX (checked with onnxruntime), torch.export's .pt2 and TorchScript take gray levels 0-255,
give the model's own probabilities, and carry their metadata; docs/export.md's standalone example reads a
user's PNG as mnist-predict does."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from runs import ROOT, in_process
from torchvision.datasets import MNIST

from mnist_cnn.cli import commands
from mnist_cnn.data.module import normalize
from mnist_cnn.inference import export
from mnist_cnn.inference.loader import load_network

pytestmark = pytest.mark.slow  # a trained checkpoint


def export_cli(*args):
    return in_process(commands.export, *args)  # the installed command runs in test_package


@pytest.fixture(scope="module")
def test_set(mnist_dir, trained_run):
    """The test set as a user has it (gray levels 0-255, float32), and the model's probabilities for it."""
    model, data = load_network(trained_run)
    gray = MNIST(mnist_dir, train=False).data
    x = normalize(gray, data["normalize"])
    with torch.no_grad():
        expected = torch.cat([model(batch).softmax(dim=1) for batch in x.split(1000)]).numpy()
    return gray.float().numpy(), expected


def test_onnx_matches_pytorch_over_the_test_set(tmp_path, trained_run, test_set):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    result = export_cli(str(trained_run), str(out))  # a run directory: the checkpoint its test used
    assert result.returncode == 0, result.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x, expected = test_set
    got = np.concatenate([session.run(["probabilities"], {"gray": batch})[0] for batch in np.array_split(x, 10)])
    assert got.shape == (10_000, 10)
    assert np.abs(got - expected).max() < 1e-4
    described = json.loads(session.get_modelmeta().custom_metadata_map["metadata.json"])
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert described["classes"] == [str(d) for d in range(10)] and described["dataset"] == "MNIST"
    assert described["test_acc"] == metrics["test_acc"] and described["commit"] == metrics["provenance"]["git_commit"]
    assert "gray levels 0-255" in described["input"] and "20x20" in described["preparation"]


def test_pt2_matches_pytorch_at_any_batch_size(tmp_path, trained_run, test_set):
    result = export_cli(str(trained_run), str(tmp_path / "model.pt2"))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    extra = {"metadata.json": ""}
    program = torch.export.load(str(tmp_path / "model.pt2"), extra_files=extra).module()
    assert json.loads(extra["metadata.json"])["classes"] == [str(d) for d in range(10)]
    x, expected = test_set
    with torch.no_grad():
        for batch in (1, 7, 2000):
            assert np.abs(program(torch.from_numpy(x[:batch])).numpy() - expected[:batch]).max() < 1e-5, batch


def test_torchscript_matches_pytorch(tmp_path, trained_run, test_set):
    result = export_cli(str(trained_run / "checkpoints" / "last.ckpt"), str(tmp_path / "model.pt"))
    assert result.returncode == 0
    assert result.stderr.strip() == f"mnist-export: note: {export.DEPRECATED['torchscript']}", result.stderr
    scripted = torch.jit.load(str(tmp_path / "model.pt"))
    x, _ = test_set
    model, data = load_network(trained_run / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        got = scripted(torch.from_numpy(x[:2000])).numpy()
        expected = model(normalize(torch.from_numpy(x[:2000]).to(torch.uint8), data["normalize"])).softmax(1).numpy()
    assert np.abs(got - expected).max() < 1e-5


def test_bad_format_is_refused_and_nothing_written(tmp_path, trained_run):
    for args, expected in (
        ([str(tmp_path / "m.tflite")], "the format cannot be told from the suffix '.tflite'"),
        (["--format", "tflite"], "argument --format: invalid choice: 'tflite'"),
    ):
        result = export_cli(str(trained_run / "checkpoints" / "last.ckpt"), *args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_standalone_example_reads_a_photo_as_mnist_predict_does(tmp_path, trained_run, mnist_dir):
    """docs/export.md's example (onnxruntime, PIL and numpy alone) on a user's PNG, dark ink on white paper at
    another size, gives mnist-predict's digit and probability."""
    pytest.importorskip("onnxruntime")
    assert export_cli(str(trained_run), str(tmp_path / "model.onnx")).returncode == 0
    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "export.md").read_text(), re.S)
    (tmp_path / "example.py").write_text(code)
    from PIL import Image

    digit = MNIST(mnist_dir, train=False).data[0].numpy()  # a 7
    Image.fromarray(255 - digit).resize((112, 112)).save(tmp_path / "seven.png")
    ours = subprocess.run(
        [sys.executable, "example.py", "model.onnx", "seven.png"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ours.returncode == 0, ours.stderr
    predicted = json.loads(
        in_process(commands.predict, str(trained_run), str(tmp_path / "seven.png"), "--json").stdout
    )[0]
    digit_read, probability = ours.stdout.split()
    assert digit_read == predicted["label"] and abs(float(probability) - predicted["probability"]) < 1e-3, ours.stdout
