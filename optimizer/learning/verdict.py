"""The one result type every verifier returns, in a module of its own so tag-specific verifier modules and the
general :mod:`optimizer.learning.verifiers` (which picks among them) can both import it without a cycle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# A control's answer: labels, text, or a tag control's value (spans, number, rating, taxonomy paths, side).
Value = object


@dataclass(frozen=True)
class Verdict:
    reward: float
    feedback: dict = field(default_factory=dict)


Verifier = Callable[[Value | None, Value], Verdict]
