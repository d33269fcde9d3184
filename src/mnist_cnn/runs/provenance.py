"""What code ran: the library versions and the git commit, recorded in each run's metrics.json."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path


def provenance() -> dict:
    """Library versions and the git commit of the code that ran, with a flag for local edits."""
    versions = {
        name: importlib.metadata.version(name)
        for name in ("torch", "torchvision", "lightning", "torchmetrics", "hydra-core")
    }
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an installed copy)
        commit, dirty = None, None
    return {"python": platform.python_version(), **versions, "git_commit": commit, "git_dirty": dirty}
