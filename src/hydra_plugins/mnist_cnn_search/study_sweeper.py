"""hparams_search=optuna's sweeper, where Hydra looks for plugins (the hydra_plugins namespace, which it imports
whole at every start): light on purpose, the search itself is mnist_cnn.search.sweeper's."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class StudySweeper(Sweeper):
    def __init__(self, **settings: Any):
        self.settings = settings

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from mnist_cnn.search.sweeper import search

        search(self.launcher, self.config, arguments, **self.settings)
