"""Label-set narrowing: offer each input only the ``k`` most likely labels of a many-label control.

A small model asked to pick one of 77 intents mostly picks one of the first few it reads. Restricting the answer's
enum to a short, input-specific list of candidates turns that into a choice it can make. The candidates come from
evidence the policy already carries, so narrowing costs no LLM call:

- **neighbours**: the labels of the demo pool's items nearest to the input (any :class:`Retriever`; BM25 today),
  each weighted by its item's retrieval score;
- **label names**: how much of a label's own words (its value and display text, ``card_arrival`` → card, arrival)
  occurs in the input, on crude 5-letter stems so ``arrived`` meets ``arrival``; each word weighs by how few labels
  share it, so ``card`` (in a dozen BANKING77 intents) says little and ``arrival`` a lot.

The two are summed (names at half weight), ranked, and cut to ``k``. When some evidence exists but fewer than ``k``
labels have any, the rest are filled with the pool's most frequent labels. **Fallback:** with no evidence at all
(no neighbour and no name overlaps the input) the control is not narrowed and the full label set is offered, since
a list made from priors alone would be arbitrary.

**A policy with a learned ranker** (``policy.ranker``, ``serving.ranking``) narrows by that ranker instead: its
top ``k`` labels by calibrated probability. The original ranking above stays for the policies made before rankers
existed, so their answers (and versions) do not change.

``Predictor.predict`` calls :func:`narrow` once per input and hands the result to both the JSON schema and the
message builder, so ``/predict``, re-prediction and every score the optimiser computes use the same candidates.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.ranking.cache import ranker_for
from optimizer.serving.retrieval import index_for, tokenize

NAME_WEIGHT = 0.5
MIN_NEIGHBOURS = 10
STEM = 5

Narrowed = Mapping[str, tuple[str, ...]]


class Retriever(Protocol):
    """What narrowing needs from a retriever: one relevance score per pool document for a query."""

    def scores(self, query: str) -> list[float]: ...


def _stems(text: str) -> set[str]:
    return {word[:STEM] for word in tokenize(text) if len(word) >= 3}


def _labels_of(demo: Demo, control: str) -> list[str]:
    value = demo.output.get(control)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _name_stems(control: ChoiceControl) -> dict[str, set[str]]:
    return {label: _stems(label.replace("_", " ") + " " + control.display_of(label)) for label in control.labels}


def name_overlap(control: ChoiceControl, text: str) -> dict[str, float]:
    """Per label, the rarity-weighted share of its name's words found in ``text`` (labels with none are left out)."""
    words = _stems(text)
    names = _name_stems(control)
    df = Counter(stem for stems in names.values() for stem in stems)
    weight = {stem: math.log(1 + len(names) / n) for stem, n in df.items()}
    out = {}
    for label, own in names.items():
        hit = sum(weight[s] for s in own & words) / sum(weight[s] for s in own) if own else 0.0
        if hit:
            out[label] = hit
    return out


def rank_labels(
    control: ChoiceControl, pool: Sequence[Demo], retriever: Retriever | None, text: str, k: int
) -> tuple[str, ...] | None:
    """The ``k`` most likely labels of ``control`` for ``text``, best first; None means "offer them all"."""
    allowed = set(control.labels)
    votes: Counter[str] = Counter()
    prior: Counter[str] = Counter()
    for demo in pool:
        prior.update(label for label in _labels_of(demo, control.name) if label in allowed)
    if retriever is not None and pool:
        scores = retriever.scores(text)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        for i in order[: max(MIN_NEIGHBOURS, 2 * k)]:
            if scores[i] <= 0 or pool[i].input == text:
                continue
            for label in _labels_of(pool[i], control.name):
                if label in allowed:
                    votes[label] += scores[i]
    top = max(votes.values(), default=0.0)
    evidence = {label: v / top for label, v in votes.items()} if top else {}
    for label, hit in name_overlap(control, text).items():
        evidence[label] = evidence.get(label, 0.0) + NAME_WEIGHT * hit
    if not evidence:
        return None
    position = {label: i for i, label in enumerate(control.labels)}
    ranked = sorted(evidence, key=lambda label: (-evidence[label], -prior[label], position[label]))[:k]
    if len(ranked) < k:
        rest = sorted(allowed - set(ranked), key=lambda label: (-prior[label], position[label]))
        ranked += rest[: k - len(ranked)]
    return tuple(ranked)


def narrow(policy: Policy, schema: Schema, text: str) -> Narrowed:
    """Control name → candidate labels, for each control this policy narrows on this input (empty: none)."""
    k = policy.narrow_k
    if k <= 0:
        return {}
    controls = [c for c in schema.choices if len(c.labels) > k]
    if not controls:
        return {}
    pool = policy.demos
    out = {}
    if policy.ranker is not None:
        for control in controls:
            ranked = ranker_for(policy.ranker, schema, control, pool).rank(text)
            if ranked.answer:  # a ranker with no examples for the control knows nothing: offer every label
                out[control.name] = ranked.top(k)
        return out
    retriever = index_for(tuple(d.input for d in pool)) if pool else None
    for control in controls:
        ranked = rank_labels(control, pool, retriever, text, k)
        if ranked is not None:
            out[control.name] = ranked
    return out
