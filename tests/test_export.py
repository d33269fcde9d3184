"""mnist-export: ONNX (checked with onnxruntime), torch.export's .pt2 and TorchScript give the model's own
probabilities."""

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST

from mnist_cnn import commands
from mnist_cnn import export
from mnist_cnn.saved import load_network
from mnist_cnn.data import normalize

from runs import in_process

pytestmark = pytest.mark.slow  # a trained checkpoint


def export_cli(*args):
    return in_process(commands.export, *args)  # the installed command runs in test_package


@pytest.fixture(scope="module")
def test_set(mnist_dir, trained_run):
    model, data = load_network(trained_run)
    x = normalize(MNIST(mnist_dir, train=False).data, data["normalize"])
    with torch.no_grad():
        expected = torch.cat([model(batch).softmax(dim=1) for batch in x.split(1000)]).numpy()
    return x.numpy(), expected


def test_onnx_matches_pytorch_over_the_test_set(tmp_path, trained_run, test_set):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    result = export_cli(str(trained_run), str(out))  # a run directory: the checkpoint its test used
    assert result.returncode == 0, result.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x, expected = test_set
    got = np.concatenate([session.run(["probabilities"], {"image": batch})[0] for batch in np.array_split(x, 10)])
    assert got.shape == (10_000, 10)
    assert np.abs(got - expected).max() < 1e-4


def test_pt2_matches_pytorch_at_any_batch_size(tmp_path, trained_run, test_set):
    result = export_cli(str(trained_run), str(tmp_path / "model.pt2"))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
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
    model, _ = load_network(trained_run / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        got, expected = scripted(torch.from_numpy(x[:2000])).numpy(), model(torch.from_numpy(x[:2000])).softmax(1).numpy()
    assert np.abs(got - expected).max() < 1e-5


def test_bad_format_is_refused_and_nothing_written(tmp_path, trained_run):
    for args, expected in (([str(tmp_path / "m.tflite")], "the format cannot be told from the suffix '.tflite'"),
                           (["--format", "tflite"], "argument --format: invalid choice: 'tflite'")):
        result = export_cli(str(trained_run / "checkpoints" / "last.ckpt"), *args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
