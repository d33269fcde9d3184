"""One folder per run, whatever starts together.

Hydra names a run's folder by the second it started and creates it with exist_ok, so runs started in the
same second (a shell loop with `&`, a SLURM array, two terminals) wrote into one folder and lost each
other's results. conf/hydra/default.yaml names folders through the `claim` resolver instead:
`${claim:outputs/runs,${name},${now:...}}` is `outputs/runs/<name, or the time>`, made here with
os.mkdir, which fails where the folder exists; the next free `-2`, `-3`, ... is taken then. Whoever made
the folder owns it. The resolver is cached (use_cache), so a composed config claims one folder and keeps
it, in the process that composed it and in the jobs its launcher starts (Hydra copies the cache into each
job's config); code reads a run's folder from hydra.runtime.output_dir, never by resolving run.dir again.

A folder given by hand (hydra.run.dir=..., hydra.sweep.dir=...) is used as given, if it holds no run:
`check_given` refuses one that does, unless it is `resume=` of that run.

OmegaConf resolves an interpolation that a merge writes over (a config that sets hydra.sweep.dir, as
hparams_search=optuna does), so a process can claim folders it never uses: those still empty when it
exits are removed (os.rmdir, which removes nothing else).
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from omegaconf import OmegaConf

from mnist_cnn.errors import ConfigError

RESOLVER = "claim"
CLAIMED: list[str] = []  # this process's, removed at exit where still empty


def claim(parent: str, name: str | None, stamp: str) -> str:
    """`parent/name` (the time, `stamp`, without a name), made now; `-2`, `-3`, ... where it exists."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    base = os.path.join(parent, str(name or stamp))
    for n in range(1, 10_000):
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.mkdir(path)
            CLAIMED.append(path)
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"{parent}: 10,000 runs named {name or stamp} already; give another name=")


def release_unused() -> None:
    """Remove the folders this process claimed and left empty."""
    while CLAIMED:
        try:
            os.rmdir(CLAIMED.pop())
        except OSError:  # holds something, or is gone: not ours to touch
            pass


def register() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, claim, use_cache=True)
        atexit.register(release_unused)


def holds_a_run(folder: Path) -> bool:
    """A run's folder (its .hydra/ or metrics.json), or a sweep's (its multirun.yaml)."""
    return any((folder / name).exists() for name in (".hydra", "metrics.json", "multirun.yaml"))


def check_given(overrides: list[str], multirun: bool) -> None:
    """A folder given by hand that already holds another run is refused: it is written into only by
    `resume=` of that run (which names it itself), and by the other processes of a DDP run, which Lightning
    starts with their rank 0's folder."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("RANK", "0") != "0":
        return
    for override in overrides:
        key, _, value = override.partition("=")
        if key == ("hydra.sweep.dir" if multirun else "hydra.run.dir") and value and holds_a_run(Path(value)):
            raise ConfigError(
                f"{key}={value} holds another run; give a new folder (or none: each run gets its own), "
                f"or resume={value} to continue that run"
            )


register()
