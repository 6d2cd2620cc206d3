"""Stratified, deterministic splits of gold items: train (proposals), validation (promotion), test (report only).

Stratum: an item's rarest gold label over the whole set (so a multi-label item is placed by the label that most
needs spreading), or a single stratum for free-text gold. Within each stratum the items are shuffled with a seed
derived from ``(seed, stratum)``; the strata are then laid end to end and each position goes to the split furthest
below its target share. Every split therefore gets its share of every label as closely as integers allow, and the
same (items, seed) always yields the same split, whatever ``PYTHONHASHSEED`` is.

Small gold (fewer than :data:`SMALL_GOLD` items) cannot afford a fixed validation and test split: see
:func:`folds`, which the loop uses for repeated-fold (nested) evaluation instead.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from optimizer.learning.gold import GoldItem
from optimizer.learning.verifiers import label_set

SMALL_GOLD = 30


@dataclass(frozen=True)
class Split:
    train: tuple[GoldItem, ...]
    val: tuple[GoldItem, ...]
    test: tuple[GoldItem, ...]

    def part(self, name: str) -> tuple[GoldItem, ...]:
        if name == "all":
            return self.train + self.val + self.test
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _labels(item: GoldItem) -> list[str]:
    out: list[str] = []
    for value in item.answer.values():
        if isinstance(value, list):
            # Choices labels only: span mentions and taxonomy paths are not strata.
            out += label_set([v for v in value if isinstance(v, str)])
    return out


def strata(items: Sequence[GoldItem]) -> list[str]:
    counts = Counter(label for item in items for label in _labels(item))
    out = []
    for item in items:
        labels = _labels(item)
        out.append(min(labels, key=lambda x: (counts[x], x)) if labels else "")
    return out


def stratified_order(items: Sequence[GoldItem], seed: int) -> list[GoldItem]:
    """Items grouped by stratum (sorted), shuffled within each stratum by a seed-derived generator."""
    groups: dict[str, list[GoldItem]] = {}
    for item, stratum in zip(items, strata(items), strict=True):
        groups.setdefault(stratum, []).append(item)
    order: list[GoldItem] = []
    for stratum in sorted(groups):
        members = groups[stratum]
        random.Random(f"split:{seed}:{stratum}").shuffle(members)
        order += members
    return order


def _deal(order: Sequence[GoldItem], shares: Sequence[float]) -> list[list[GoldItem]]:
    """Each position goes to the part furthest below its target share (ties to the earlier part)."""
    total = sum(shares)
    parts: list[list[GoldItem]] = [[] for _ in shares]
    for i, item in enumerate(order, start=1):
        deficits = [share / total * i - len(part) for share, part in zip(shares, parts, strict=True)]
        parts[max(range(len(parts)), key=lambda j: (deficits[j], -j))].append(item)
    return parts


def split(items: Sequence[GoldItem], seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Split:
    """Stratified train/val/test split. A zero fraction yields an empty part (e.g. no internal test set)."""
    if any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError("split fractions must be non-negative and not all zero")
    active = [i for i, f in enumerate(fractions) if f > 0]
    dealt = _deal(stratified_order(items, seed), [fractions[i] for i in active])
    parts: list[tuple[GoldItem, ...]] = [(), (), ()]
    for index, part in zip(active, dealt, strict=True):
        parts[index] = tuple(part)
    return Split(*parts)


def folds(items: Sequence[GoldItem], k: int, seed: int = 0) -> list[tuple[GoldItem, ...]]:
    """``k`` stratified folds of roughly equal size (for small gold: each fold is the test set once)."""
    k = max(2, min(k, len(items)))
    return [tuple(part) for part in _deal(stratified_order(items, seed), [1.0] * k)]
