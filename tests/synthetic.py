"""Small synthetic IDX files standing in for Fashion-MNIST (the Debian package's folder, its checksums made
theirs, torchvision unreachable): for tests that need a dataset on disk and must not download one."""

import gzip
import hashlib
import struct

import numpy as np

from mnist_cnn.data import fetch


def idx_files(n_train=300, n_test=100) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose row tells the class: learnable
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        files[f"{prefix}-images-idx3-ubyte"] = struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes()
        files[f"{prefix}-labels-idx1-ubyte"] = struct.pack(">ii", 2049, n) + labels.tobytes()
    return files


def unreachable(*args):
    raise OSError("unreachable in this test")


def fake_fashion_mnist(tmp_path, monkeypatch, n_train=300) -> dict[str, bytes]:
    """The Debian package's folder in tmp_path holding synthetic files, which the chain of sources takes as
    the official ones; torchvision unreachable. Returns the files."""
    files = idx_files(n_train)
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    folder.mkdir()
    for name, data in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    monkeypatch.setattr(fetch, "DEBIAN_FASHION_DIR", folder)
    monkeypatch.setattr(fetch, "FASHION_SHA256", {n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    monkeypatch.setattr(fetch, "fetch_with_torchvision", unreachable)
    return files
