"""The knobs of one optimisation run (:class:`optimizer.learning.search.Search`), with their defaults.

Why a module of its own: the web API, the CLI and the benches build a ``LoopConfig`` (the policy API reads
``max_instruction_chars`` to cap a published instruction) without needing the search that runs on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from optimizer.learning.gate import GateRule


@dataclass(frozen=True)
class LoopConfig:
    minibatch: int = 8
    settle_ties: bool = True
    candidates: int = 3
    pool_size: int = 4
    patience: int = 4
    max_steps: int = 40
    demos: bool = True
    demo_k: int = 4
    max_demo_k: int = 8
    # Label-set narrowing for controls with more than narrow_min_labels labels; narrow_k 0 never proposes it.
    narrow_k: int = 8
    narrow_min_labels: int = 5
    # Learned answers (``modes``): rankers trained on the training pool, answering alone or in a cascade.
    learned: bool = True
    learned_candidates: int = 2
    # After the search, a champion whose pool is the training split learns from validation items too (``_refit``).
    refit: bool = True
    # A candidate that answers every gold item without the LLM is judged on training and validation items
    # (``Search._widened``), not on the minibatch and validation alone.
    widen: bool = True
    label_guide: bool = True
    guide_labels: int = 12
    max_instruction_chars: int = 2000
    proposer_max_tokens: int = 600
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    folds: int = 3
    gate: GateRule = field(default_factory=GateRule)

    def __post_init__(self) -> None:
        if not 2 <= self.candidates <= 4:
            raise ValueError("candidates per step must be 2-4")
        if self.minibatch < 1:
            raise ValueError("minibatch must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)
