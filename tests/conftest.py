import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_cnn.data import default_data_dir
from mnist_cnn.mnist_files import ensure_mnist

ROOT = Path(__file__).resolve().parents[1]
NOT_OURS = {".git", "__pycache__", ".pytest_cache"}  # git's and Python's own bookkeeping


def repository_files() -> set[Path]:
    return {p for p in ROOT.rglob("*") if not NOT_OURS & set(p.relative_to(ROOT).parts)
            and not any(part.endswith(".egg-info") for part in p.parts)}


FILES_BEFORE: set[Path] = set()


def pytest_sessionstart(session):
    FILES_BEFORE.update(repository_files())


def pytest_sessionfinish(session, exitstatus):
    """Tests write under tmp_path only: a file left in the repository fails the run."""
    left = sorted(repository_files() - FILES_BEFORE)
    if left:
        print(f"\nTests left {len(left)} file(s) in the repository: " + ", ".join(str(p.relative_to(ROOT)) for p in left[:10]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    """Real MNIST, through the project's own chain of sources, shared by the whole session."""
    data_dir = default_data_dir()
    ensure_mnist(data_dir)
    return data_dir


def run_train(*overrides: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real entry point, as a user runs it from the repository root."""
    return subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


# A few batches of real MNIST: enough to exercise every file a run writes.
# GPU tests carry @pytest.mark.gpu (select them with -m gpu) and this, which skips them without CUDA.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

FEW_BATCHES = (
    "trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=3", "trainer.log_every_n_steps=1", "callbacks.progress_bar.refresh_rate=0",
)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mnist_dir) -> Path:
    """A briefly trained baseline (100 batches): a real checkpoint for predict and export."""
    run_dir = tmp_path_factory.mktemp("trained")
    result = run_train("trainer.max_epochs=1", "trainer.limit_train_batches=100", "trainer.limit_val_batches=10",
                       "trainer.limit_test_batches=2", "trainer.precision=bf16-mixed", "logger=csv",
                       "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run_dir}",
                       env={"MNIST_CNN_DATA": mnist_dir})
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
