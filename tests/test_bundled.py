"""The model the package carries (scripts/bundle_model.py; docs/bundled.md): its bytes as recorded, small,
and reading MNIST and a user's digit with no checkpoint given."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from runs import in_process
from torchvision.datasets import MNIST

from mnist_cnn.cli import commands
from mnist_cnn.data.datasets import normalize
from mnist_cnn.inference.loader import BUNDLED_SHA256, bundled, load_network

pytestmark = pytest.mark.slow  # reads the test set


def test_its_bytes_are_the_recorded_ones_and_few():
    data = bundled().read_bytes()
    assert len(data) < 3_000_000 and hashlib.sha256(data).hexdigest() == BUNDLED_SHA256


def test_it_reads_mnist_at_its_recorded_accuracy(mnist_dir):
    net, data = load_network(None)
    assert data["dataset"] == "mnist" and data["origin"]["command"].startswith("python train.py experiment=best")
    test = MNIST(mnist_dir, train=False)
    with torch.no_grad():
        read = torch.cat([net(normalize(x, data["normalize"])).argmax(dim=1) for x in test.data.split(2000)])
    # the run tested in bf16-mixed; read here in float32, a few of the 10,000 digits may go the other way
    assert (read == test.targets).float().mean().item() == pytest.approx(data["origin"]["test_acc"], abs=5e-4)


def test_predict_and_explain_use_it_when_no_checkpoint_is_given_and_say_so(tmp_path, mnist_dir):
    seven = MNIST(mnist_dir, train=False).data[0].numpy()
    Image.fromarray(255 - seven).resize((90, 90)).save(tmp_path / "seven.png")
    result = in_process(commands.predict, str(tmp_path / "seven.png"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["label"] == "7"
    assert result.stderr.strip() == (
        "mnist-predict: no checkpoint given: reading with the model the package carries "
        "(experiment=best; docs/bundled.md)"
    )
    folder = in_process(commands.explain, str(tmp_path), "--out", str(tmp_path / "out"))  # a folder of images
    assert folder.returncode == 0 and (tmp_path / "out" / "seven.explained.png").exists(), folder.stderr
    assert np.asarray(Image.open(tmp_path / "out" / "seven.explained.png")).shape[2] in (3, 4)
