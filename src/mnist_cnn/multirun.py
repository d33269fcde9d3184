"""A multirun's folder: what makes one, and its jobs' folders in job order (read by the sweep report and by
the commands that take a multirun as an ensemble)."""

from __future__ import annotations

from pathlib import Path


def is_multirun(path: Path) -> bool:
    """A folder of a multirun's jobs (Hydra's multirun.yaml, or job folders that hold metrics.json)."""
    return path.is_dir() and ((path / "multirun.yaml").exists() or any(path.glob("*/metrics.json")))


def job_folders(sweep: Path, marks: tuple[str, ...] = ("metrics.json",)) -> list[Path]:
    """A multirun folder's job folders (those holding any of `marks`), in job order: 0, 1, ..., 10, then by name."""
    found = {p.parent for mark in marks for p in sweep.glob(f"*/{mark}")}
    return sorted(found, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
