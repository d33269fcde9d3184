"""95% intervals over seeds: what a sweep's numbers can tell apart, and what they cannot.

A configuration's mean over n seeds has the interval mean ± t(0.975, n-1) · sd / √n (Student's t).
Two configurations differ by the difference of their means, with Welch's interval (unequal spreads and
seed counts); they are distinguishable only where that interval excludes zero.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    mean: float
    sd: float | None  # None with one seed: the spread is unknown
    n: int

    @property
    def half_width(self) -> float | None:
        if self.sd is None:
            return None
        return float(stats.t.ppf((1 + LEVEL) / 2, self.n - 1)) * self.sd / math.sqrt(self.n)


def estimate(values: list[float]) -> Estimate:
    return Estimate(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass(frozen=True)
class Difference:
    value: float
    low: float | None
    high: float | None

    @property
    def distinguishable(self) -> bool | None:
        return None if self.low is None else bool(self.low > 0 or self.high < 0)


def welch(a: Estimate, b: Estimate) -> Difference:
    """a.mean - b.mean, with its Welch interval."""
    value = a.mean - b.mean
    if a.sd is None or b.sd is None:
        return Difference(value, None, None)
    half = _welch_half_width(a.sd, a.n, b.sd, b.n)
    return Difference(value, value - half, value + half)


def _welch_half_width(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    if va + vb == 0:
        return 0.0  # no spread at all: the means are the values
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    return float(stats.t.ppf((1 + LEVEL) / 2, df)) * math.sqrt(va + vb)


def seeds_to_separate(a: Estimate, b: Estimate, limit: int = 1000) -> int | None:
    """Roughly how many seeds per configuration would make a difference this large, with these
    spreads, distinguishable; None past `limit` (or with no difference at all)."""
    if a.sd is None or b.sd is None or a.mean == b.mean:
        return None
    return next((n for n in range(2, limit + 1) if _welch_half_width(a.sd, n, b.sd, n) < abs(a.mean - b.mean)), None)
