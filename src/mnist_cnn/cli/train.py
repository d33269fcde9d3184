"""Train one of the lab's CNNs on MNIST, then test the best checkpoint on the official test set.

python train.py                                  # the lab's first run (the groups' defaults)
python train.py experiment=lab_elu trainer.accelerator=gpu
python train.py -m data.batch_size=16,32,64      # one job per value, each from scratch
python train.py resume=outputs/runs/<run>        # continue a run with its own overrides
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.plugins import Plugins
from omegaconf import DictConfig

from hydra_plugins.mnist_cnn_search.study_sweeper import StudySweeper
from mnist_cnn.cli import usage
from mnist_cnn.cli.guard import guarded, leave_after
from mnist_cnn.config.overrides import (
    CONFIG_PATH,
    check_overrides,
    composing,
    config_dir_searched,
    network_keys_added,
    split_args,
)
from mnist_cnn.errors import ConfigError, UserError
from mnist_cnn.runs.folder import check_given, release_unused
from mnist_cnn.runs.resume import Finished, resume_overrides

PROG = "mnist-train"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def run(cfg: DictConfig) -> float | None:
    """The job (mnist_cnn.runs.job), imported only now: Hydra has answered --help, --cfg and -sc without torch."""
    from mnist_cnn.runs.job import run_job

    return run_job(cfg)


def main() -> None:
    args = sys.argv[1:]
    flags, overrides = split_args(args)
    if {"--help", "-h"} & set(flags):
        usage.print_help(PROG, network_keys_added(config_dir_searched(args)))
        return
    with guarded(PROG):
        try:
            check_overrides(args)
            resume = next((a.partition("=")[2] for a in args if a.startswith("resume=")), None)
            if resume:
                sys.argv[1:] = resume_arguments(resume, args)
            else:
                check_given(
                    overrides,
                    multirun=bool({"-m", "--multirun"} & set(flags)) or any(o.startswith("sweep=") for o in overrides),
                )
        except Finished as exc:
            print(f"{PROG}: {exc}")
            sys.exit(0)
    sys.argv[1:] = network_keys_added(sys.argv[1:])
    # Hydra scans the hydra_plugins namespace for plugins, and misses ours under an editable install (its path
    # hook lists no modules): the search's sweeper is registered by hand, as Hydra's Plugins.register allows
    Plugins.instance().register(StudySweeper)
    usage.register()  # --help's text, where Hydra itself is asked for it (hydra.help.template)
    run_hydra(PROG, run)


def resume_arguments(resume: str, args: list[str]) -> list[str]:
    """A resumed run continues in its own directory with its own saved overrides (mnist_cnn.runs.resume), and
    Hydra leaves its .hydra/ as it is until the resume has succeeded (save_resumed_config). A search's folder
    (its search.json) continues the search: its command line again, more trials by hydra.sweeper.n_trials=."""
    flags, given = split_args(args)
    search = Path(resume) / "search.json"
    if search.is_file():  # a search's folder: its command again, which continues its study
        saved = json.loads(search.read_text())["overrides"]
        return [*flags, *saved, *(o for o in given if not o.startswith("resume=")), f"hydra.sweep.dir={resume}"]
    if {"-m", "--multirun"} & set(flags):
        raise ConfigError(f"resume={resume}: a resume continues one run; leave out -m")
    overrides = resume_overrides(resume, given)
    run_dir = next((a for a in args if a.startswith("hydra.run.dir=")), f"hydra.run.dir={resume}")
    return [*flags, *overrides, f"resume={resume}", run_dir, "hydra.output_subdir=null"]


def run_hydra(prog: str, hydra_main: Callable[[], object]) -> None:
    """Run a @hydra.main function inside the commands' guard (mnist_cnn.cli.guard), with Hydra's and OmegaConf's
    errors as one line (`composing`); an OSError that reaches here is Hydra's own, making the run folder."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let Hydra's errors reach us unprinted
    with guarded(prog):
        try:
            with composing():
                hydra_main()
        except OSError as exc:  # what the job catches never gets here
            if not exc.filename:
                raise
            raise UserError(
                f"{exc.filename}: {exc.strerror} (the run folder: hydra.run.dir, or hydra.sweep.dir with -m)"
            ) from None
        finally:
            release_unused()  # folders a merge claimed in passing


def entry() -> None:
    """mnist-train and train.py: main, and the process ends at once (mnist_cnn.cli.guard.leave_after)."""
    leave_after(main)


if __name__ == "__main__":
    entry()
