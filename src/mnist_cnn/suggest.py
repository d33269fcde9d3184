"""Did you mean: one rule for every slip, in a key, a config group's option or a value, case aside."""

from __future__ import annotations

import difflib

CUTOFF = 0.75  # difflib's similarity: max_epoch -> max_epochs, elu2 -> elu, adam -> Adam; not lr -> elu


def closest(word: str, candidates: list[str], n: int = 3) -> list[str]:
    """Up to `n` candidates that `word` may be a slip for, upper and lower case alike: the same last dotted
    part (lr -> model.optimizer.lr, adam -> Adam), or a close spelling of the whole or of the last part
    (max_epoch, epochs -> trainer.max_epochs)."""
    by_lower: dict[str, list[str]] = {}
    by_leaf: dict[str, list[str]] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), []).append(c)
        by_leaf.setdefault(c.lower().rpartition(".")[2], []).append(c)
    whole = word.lower()
    leaf = whole.rpartition(".")[2]
    found = list(by_leaf.get(leaf, []))
    found += [
        c for near in difflib.get_close_matches(whole, list(by_lower), n=n, cutoff=CUTOFF) for c in by_lower[near]
    ]
    found += [c for near in difflib.get_close_matches(leaf, list(by_leaf), n=n, cutoff=CUTOFF) for c in by_leaf[near]]
    return list(dict.fromkeys(c for c in found if c != word))[:n]


def did_you_mean(word: str, candidates: list[str], n: int = 3, prefix: str = "") -> str:
    """ "; did you mean <prefix><candidate> or ...?", or "" where nothing is close."""
    near = closest(word, candidates, n)
    return f"; did you mean {' or '.join(prefix + c for c in near)}?" if near else ""
