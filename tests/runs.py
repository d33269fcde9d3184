"""How the tests run the project's commands: the real entry point in its own process (run_train), or a
command's main in the test process (in_process, train_here); a few batches of real MNIST (FEW_BATCHES); a
run's metrics.json (metrics_of). Fixtures and the session's checks are in conftest.py."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import processes
import pytest
import torch

from mnist_cnn.cli import train

ROOT = Path(__file__).resolve().parents[1]


def run_train(*overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point, as a user runs it from the repository root."""
    return processes.run([sys.executable, "train.py", *overrides], cwd=ROOT, env={**os.environ, **(env or {})})


class Terminal(io.StringIO):
    """Captured output that says it is a terminal, as a console does (the progress bar draws only there)."""

    def isatty(self) -> bool:
        return True


def in_process(main, *args: str, env: dict | None = None, terminal: bool = False) -> subprocess.CompletedProcess:
    """A command's `main` run in this process with `args` as its command line: its exit status and what it
    printed, as run_train gives them; `terminal`: printed to what says it is a terminal. A fresh interpreter
    spends seconds importing torch and Lightning before it reads its first argument; here that is paid once.
    Python warnings go to pytest here, not to the console, so tests of what the console shows use run_train."""
    out, err = (Terminal(), Terminal()) if terminal else (io.StringIO(), io.StringIO())
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setattr(sys, "argv", [main.__module__, *args])
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        try:
            main()
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess([main.__module__, *args], status, out.getvalue(), err.getvalue())


def train_here(*overrides: str, env: dict | None = None, terminal: bool = False) -> subprocess.CompletedProcess:
    """`python train.py [overrides]` in this process (in_process)."""
    return in_process(train.main, *overrides, env=env, terminal=terminal)


# A few batches of real MNIST: enough to exercise every file a run writes.
# GPU tests carry @pytest.mark.gpu (select them with -m gpu) and this, which skips them without CUDA.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

FEW_BATCHES = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=3",
    "trainer.log_every_n_steps=1",
    "explain=false",
    "figures=false",
    "callbacks.progress_bar.refresh_rate=0",
)


def metrics_of(run_dir: Path) -> dict:
    """A run's metrics.json."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())
