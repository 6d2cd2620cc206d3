"""What LLM calls cost: tokens times prices per million tokens, and where each price came from.

A price is quoted per profile and model (:class:`Quote`): one set by whoever runs the backend (``LLM_PRICE_*_PER_1M``,
``OPTIMIZER_PRICE_*_PER_1M``, a profile's ``price_*_per_1m``), else the vendored price table for the model
(:mod:`.prices`), else none. The embedded model is free. A model with no price counts 0 but is shown as "not priced",
never as a figure that looks measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

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

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / PER


class PriceSource(StrEnum):
    """Where a quoted price came from, so a page can say "not priced" rather than show a measured-looking 0."""

    SET = "set"  # by the operator: a setting or the profile's own price
    TABLE = "table"  # the vendored price table (optimizer/learning/model_prices.json)
    EMBEDDED = "embedded"  # the bundled SmolLM2 server: free
    UNPRICED = "unpriced"  # an unknown model and no price set: counted as 0


@dataclass(frozen=True)
class Quote:
    price: Price
    source: PriceSource
    model: str
    entry: str | None = None  # the price table's entry that matched, when the table was used

    @property
    def priced(self) -> bool:
        return self.source is not PriceSource.UNPRICED


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
        cost = price.cost(prompt, completion)
        rows.append(RoleCost(role, _count(counts, "calls"), prompt, completion, round(cost, 6), price.priced))
    return rows
