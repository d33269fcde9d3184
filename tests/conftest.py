import os
import tempfile
from pathlib import Path

import processes
import pytest
import torch
from filelock import FileLock
from runs import ROOT, train_here

from mnist_cnn.data.datasets import default_data_dir
from mnist_cnn.data.fetch import ensure_mnist

NOT_OURS = {".git", "__pycache__", ".pytest_cache"}  # git's and Python's own bookkeeping


def repository_files() -> set[Path]:
    """Every file under the repository but git's, Python's, and a virtual environment's (README installs
    into .venv; pip may write into it while the tests run)."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [
            d
            for d in dirs
            if d not in NOT_OURS
            and not d.endswith(".egg-info")
            and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        ]
        found.update(Path(folder, f) for f in files)
    return found


FILES_BEFORE: set[Path] = set()
CONTROLLER = not os.environ.get("PYTEST_XDIST_WORKER")  # the process that ends last, with -n or without


def pytest_configure(config):
    if CONTROLLER:
        processes.adopt_orphans()  # what a test started, and what that started, is found at the end


def pytest_sessionstart(session):
    FILES_BEFORE.update(repository_files())
    # What libraries put in the temporary folder, in this process and the commands tests start (MLflow's
    # lock per SQLite store, Gradio's uploads), goes to the session's, which pytest clears, not to /tmp.
    scratch = session.config._tmp_path_factory.getbasetemp() / "tmp"
    scratch.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(scratch)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `pytest -n auto` runs a worker per core: one thread each, for the training done in the worker
        # and the commands it starts, or each would spin on the other's core. Every run then trains with
        # one thread, so runs a test compares were trained alike.
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


# The modules whose tests start servers, browsers and worker processes, longest first: run first, so that
# `-n auto` shares out the short tests at the end instead of waiting on a long one. Whole modules move, so
# that a module's fixtures (the demo's server) are set up once.
LONGEST_FIRST = ["test_search.py", "test_demo.py", "test_tracking.py", "test_tensorboard.py", "test_package.py",
                 "test_notebook.py", "test_dashboard.py", "test_added_model.py"]  # fmt: skip


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.hookimpl(trylast=True)  # after pytest-xdist has stopped its workers
def pytest_sessionfinish(session, exitstatus):
    """Tests write under tmp_path only: a file left in the repository fails the run. Every process a
    test started has ended: one still running is named, killed, and fails the run."""
    left = sorted(repository_files() - FILES_BEFORE)
    if left:
        print(
            f"\nTests left {len(left)} file(s) in the repository: "
            + ", ".join(str(p.relative_to(ROOT)) for p in left[:10])
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    running = processes.leftovers() if CONTROLLER else []
    if running:
        print(
            f"\nTests left {len(running)} process(es) running (now killed): "
            + "; ".join(f"{pid} {command[:120]}" for pid, command in running[:10])
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def data_folder(monkeypatch, tmp_path_factory):
    """Every command a test runs, in its process or another, reads MNIST from the session's folder (the one
    mnist_dir fetches into), and a logger=mlflow that names no store writes to the session's temporary one,
    not to outputs/mlflow.db in the repository, unless the test names another."""
    monkeypatch.setenv("MNIST_CNN_DATA", default_data_dir())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.getbasetemp() / 'mlflow.db'}")


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    """Real MNIST, through the project's own chain of sources, shared by the whole session."""
    data_dir = default_data_dir()
    ensure_mnist(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def shared_folder(tmp_path_factory) -> Path:
    """The session's temporary folder that every worker of `pytest -n` sees: for what the first worker to
    need it makes, under a FileLock, and the others share."""
    shared = tmp_path_factory.getbasetemp()
    return shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared  # above each worker's own


@pytest.fixture(scope="session")
def trained_run(shared_folder, mnist_dir) -> Path:
    """A briefly trained baseline (60 batches): a real checkpoint for predict, export and the demo, read
    only. Under `pytest -n`, the first worker to need it trains it and the others wait and share it."""
    run_dir = shared_folder / "trained"
    with FileLock(f"{run_dir}.lock"):
        if not (run_dir / "metrics.json").exists():
            result = train_here(
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=60",
                "trainer.limit_val_batches=10",
                "trainer.limit_test_batches=2",
                "trainer.precision=bf16-mixed",
                "logger=csv",
                "callbacks.progress_bar.refresh_rate=0",
                "explain=false",
                "figures=false",
                f"hydra.run.dir={run_dir}",
            )
            assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
