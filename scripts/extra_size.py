"""What an optional dependency adds to an installed environment: the packages it needs that nothing else the
project installs needs, and their size on disk.

    python scripts/extra_size.py mlflow        # README's figure for what MLflow adds to `pip install -e ".[dev]"`
"""

import importlib.metadata as md
import os
import sys

from packaging.requirements import Requirement

THE_REST = [
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "matplotlib",
    "tensorboard",
    "hydra-joblib-launcher",
    "hydra-submitit-launcher",
    "hydra-optuna-sweeper",
    "onnx",
    "onnxruntime",
    "filelock",
    "scipy",
    "pytest",
    "pytest-xdist",
    "setuptools",
    "nbclient",
    "nbformat",
    "ipykernel",
    "playwright",
    "gradio",
]


def closure(roots: list[str]) -> set[str]:
    """The installed distributions `roots` need, transitively (extras left out)."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        todo += [r.name for r in map(Requirement, requires) if r.marker is None or r.marker.evaluate({"extra": ""})]
    return seen


def size(name: str) -> int:
    dist = md.distribution(name)
    return sum(os.path.getsize(p) for p in (dist.locate_file(f) for f in dist.files or []) if os.path.isfile(p))


def main() -> None:
    extra = sorted(closure(sys.argv[1:]) - closure([r for r in THE_REST if r not in sys.argv[1:]]))
    sizes = sorted(((size(n), n) for n in extra), reverse=True)
    print(
        f"{len(extra)} packages, {sum(s for s, _ in sizes) / 1e6:.0f} MB; the largest: "
        + ", ".join(f"{n} {s / 1e6:.0f} MB" for s, n in sizes[:4])
    )


if __name__ == "__main__":
    main()
