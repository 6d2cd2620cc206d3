"""A policy's learned rankers at serving time: the rankings of one input, whether they answer it, and the
candidate labels they leave the LLM.

- ``ranker`` mode: the rankings answer every input (no LLM call);
- ``cascade``: they answer an input when every control's calibrated confidence is at least ``tau``; otherwise the
  LLM answers, choosing among each many-label control's top ``narrow_k`` labels;
- ``llm`` mode with a ``ranker``: the rankings only narrow (``narrowing.narrow``).

Only a config whose every answer is a Choices control can be answered by rankers: a free-text area or a span tag
needs the LLM, so for such a config the learned modes fall back to the LLM (still narrowed by the ranker).
"""

from __future__ import annotations

from collections.abc import Mapping

from optimizer.labelstudio.labelconfig import Schema
from optimizer.serving.modes import Mode
from optimizer.serving.policy import Policy
from optimizer.serving.ranking.cache import ranker_for


def answerable(schema: Schema) -> bool:
    """Rankers can answer this config: it asks only for Choices."""
    return bool(schema.choices) and not schema.answers and not schema.tags


def learned(policy: Policy, schema: Schema) -> bool:
    """The policy's rankers may answer inputs of this config (``ranker`` or ``cascade`` mode)."""
    return policy.mode is not Mode.LLM and policy.ranker is not None and answerable(schema)


def rankings(policy: Policy, schema: Schema, text: str) -> dict:
    """Control name → :class:`~optimizer.serving.ranking.ranker.Ranking` of ``text``, from the policy's pool."""
    assert policy.ranker is not None
    return {c.name: ranker_for(policy.ranker, schema, c, policy.demos).rank(text) for c in schema.choices}


def confident(ranked: Mapping, tau: float) -> bool:
    """Every control's answer is at least ``tau`` likely right (and every control has one)."""
    return bool(ranked) and all(r.answer and r.confidence >= tau for r in ranked.values())


def answers(policy: Policy, schema: Schema, ranked: Mapping) -> bool:
    """Whether the rankers answer this input themselves."""
    return policy.mode is Mode.RANKER or (policy.mode is Mode.CASCADE and confident(ranked, policy.tau))


def candidates(schema: Schema, ranked: Mapping, k: int) -> dict[str, tuple[str, ...]]:
    """Each many-label control's top ``k`` labels (none when ``k`` is 0 or the control has ``k`` or fewer)."""
    if k <= 0:
        return {}
    return {c.name: ranked[c.name].top(k) for c in schema.choices if len(c.labels) > k and ranked[c.name].answer}
