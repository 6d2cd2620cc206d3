"""Who answers a policy's inputs, and with which ranker: the names a policy stores and a prediction reports.

Kept apart from the rankers themselves so that a policy, the store and the web layer can name a mode without
importing scikit-learn (about a second and a half), which only a process that builds a ranker pays for.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How a policy answers an input."""

    LLM = "llm"  # the LLM answers (narrowed to the ranker's candidates when ``narrow_k`` > 0)
    RANKER = "ranker"  # the learned ranker answers every Choices control; no LLM call
    CASCADE = "cascade"  # the ranker answers when its calibrated confidence >= tau, the LLM otherwise


class RankerKind(StrEnum):
    """Which model ranks a control's labels (``serving.ranking``)."""

    LINEAR = "linear"  # TF-IDF (word 1-2-grams, char 2-5-grams) + logistic regression
    NEIGHBOURS = "neighbours"  # the BM25 nearest-neighbour vote


class Source(StrEnum):
    """What produced a prediction's answer; ``/metrics`` counts answers by it."""

    RANKER = "ranker"
    LLM = "llm"
