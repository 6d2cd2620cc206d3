"""What a run's LLM calls cost: tokens by role (labeller, proposer) times optional prices per million tokens.

Prices are settings (``LLM_PRICE_*_PER_1M`` for the labelling model, ``OPTIMIZER_PRICE_*_PER_1M`` for the proposer,
which default to the labeller's). The embedded model costs nothing, so no price means an estimate of 0, shown as
"not priced" rather than a number that looks measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("labeller", "proposer")
PER = 1_000_000


@dataclass(frozen=True)
class Price:
    """Currency units per 1M input (prompt) and output (completion) tokens."""

    input: float = 0.0
    output: float = 0.0

    @property
    def priced(self) -> bool:
        return self.input > 0 or self.output > 0


@dataclass(frozen=True)
class RoleCost:
    role: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    priced: bool


def _count(usage: Mapping, name: str) -> int:
    value = usage.get(name, 0) if isinstance(usage, Mapping) else 0
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def estimate(usage: Mapping[str, Mapping], prices: Mapping[str, Price]) -> list[RoleCost]:
    """One row per role: calls, tokens and their estimated cost under ``prices`` (a role without one: 0)."""
    rows = []
    for role in ROLES:
        counts = usage.get(role) or {}
        price = prices.get(role) or Price()
        prompt, completion = _count(counts, "prompt_tokens"), _count(counts, "completion_tokens")
        cost = (prompt * price.input + completion * price.output) / PER
        rows.append(RoleCost(role, _count(counts, "calls"), prompt, completion, round(cost, 6), price.priced))
    return rows
