"""The seconds each stage of a job took — setup (imports, config, data), fit, test, figures, explanations,
tracking — for metrics.json, train.log and the console, which names each stage after the fit as it starts
and ends with the whole time."""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Iterator

import lightning as L

log = logging.getLogger(__name__)


def process_age() -> float:
    """Seconds since this process started (Linux's /proc: the interpreter's start and every import included);
    elsewhere, since this module was imported, which leaves out the imports before it."""
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            return max(0.0, float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()
_previous_job_end: float | None = None  # a multirun's next job is set up from here


class Stages(L.Callback):
    """A job's clock. Its setup runs from the process's start (a multirun's later jobs: from the previous
    job's end) to the fit's start, which Lightning signals once the data module is set up; every later stage
    is timed by `stage`, which says on the console what starts."""

    def __init__(self) -> None:
        self.started = _previous_job_end if _previous_job_end is not None else time.perf_counter() - process_age()
        self.seconds: dict[str, float] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        if "setup" not in self.seconds:  # a test-only call would come here again
            self.seconds["setup"] = time.perf_counter() - self.started
        self.fit_started = time.perf_counter()

    def fit_ended(self) -> float:
        """The fit's seconds, from the data module being ready to the trainer's return."""
        self.seconds["fit"] = time.perf_counter() - self.fit_started
        return self.seconds["fit"]

    @contextmanager
    def stage(self, name: str, saying: str | None = None) -> Iterator[None]:
        """Times `name` (seconds add up over calls); `saying`: the console's line as it starts."""
        if saying:
            log.info(saying)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return time.perf_counter() - self.started

    def record(self) -> dict:
        """metrics.json's "stages": each stage's seconds, and the whole job's so far."""
        self.recorded = {**{k: round(v, 3) for k, v in self.seconds.items()}, "total": round(self.total(), 3)}
        return self.recorded

    def line(self) -> str:
        """The console's last line: what the finished run's metrics.json records."""
        recorded = dict(getattr(self, "recorded", None) or self.record())
        total = recorded.pop("total")
        return f"Done in {total:.1f} s ({', '.join(f'{name} {seconds:.1f}' for name, seconds in recorded.items())})"

    def ended(self) -> None:
        global _previous_job_end
        _previous_job_end = time.perf_counter()
