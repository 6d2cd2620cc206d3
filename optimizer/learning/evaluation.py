"""Score a policy on gold items through the serving predictor, paying for each (policy, item) pair at most once.

The predictions come from :meth:`Predictor.predict_many`, the code path ``/predict`` uses, so a score is what users
would get. Every answer is memoised by ``predictor.item_key`` (policy version, schema, input hash): successful ones
by the predictor itself, failed ones here, so a pair that failed is scored 0 rather than sent again. A batch cut
short by the budget is not scored at all: it returns None, and the caller stops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.budget import Budget
from optimizer.learning.gold import GoldItem
from optimizer.learning.metrics import summary
from optimizer.learning.rewards import HARD, Reward, Scoring, balance_weights, soft_reward
from optimizer.learning.verifiers import ItemScore, ScoreError, ScoreErrorKind, Verifier, combine, mean
from optimizer.serving.modes import Source
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import FailureReason, Prediction, Predictor, item_key


@dataclass(frozen=True)
class Evaluation:
    policy: str
    items: tuple[GoldItem, ...]
    predictions: tuple[Prediction, ...]
    scores: tuple[ItemScore, ...]

    @property
    def rewards(self) -> dict[str, float]:
        return {item.id: score.reward for item, score in zip(self.items, self.scores, strict=True)}

    @property
    def mean(self) -> float:
        return mean(s.reward for s in self.scores)

    @property
    def llm_per_100(self) -> float:
        """LLM calls this policy costs per 100 served tasks, as measured on these items (a ranker answer costs 0)."""
        if not self.predictions:
            return 0.0
        return round(100.0 * sum(p.source is Source.LLM for p in self.predictions) / len(self.predictions), 2)

    @property
    def hard_mean(self) -> float:
        """The hard verifier's mean, whatever reward drives the loop (promotion must not regress on it)."""
        return mean(s.hard_reward for s in self.scores)

    def metrics(self, schema: Schema) -> dict:
        """Mean reward plus accuracy / F1 per Choices control, for reports.

        Each control's summary is under ``controls[name]``, and also at the top level under its name unless that
        name is one of the report's own keys (a reward-scoring config's control is often called ``reward``).
        """
        out: dict = {"reward": round(self.mean, 6), "n": len(self.items)}
        if any(s.hard is not None for s in self.scores):
            out["hard_reward"] = round(self.hard_mean, 6)
        out["failed"] = sum(1 for p in self.predictions if llm_failed(p))
        out["empty"] = sum(1 for p in self.predictions if p.empty and not llm_failed(p))
        out["llm_calls_per_100"] = self.llm_per_100
        controls = {}
        for control in schema.choices:
            pairs = [
                (p.choices.get(control.name, []), item.answer[control.name])
                for item, p in zip(self.items, self.predictions, strict=True)
                if control.name in item.answer
            ]
            controls[control.name] = summary(pairs, control.labels, control.multiple)
        out.update({name: value for name, value in controls.items() if name not in out and name != "controls"})
        out["controls"] = controls
        return out


def llm_failed(prediction: Prediction) -> bool:
    """The LLM gave no answer at all (as opposed to an answer with nothing usable in it)."""
    return prediction.error is not None and not prediction.error.reason.answered


def score_prediction(
    schema: Schema,
    prediction: Prediction,
    item: GoldItem,
    verifiers: Mapping[str, Verifier] | None = None,
    weights: Mapping[str, float] | None = None,
) -> ItemScore:
    """A failed or empty prediction scores like any wrong answer; the reason is kept for feedback."""
    predicted: dict = prediction.answer
    score = combine(schema, predicted, item.answer, verifiers=verifiers, weights=weights)
    if llm_failed(prediction):
        return ItemScore(0.0, score.verdicts, error=ScoreError(ScoreErrorKind.LLM, str(prediction.error)))
    if prediction.empty:
        detail = "no valid label in the answer: " + prediction.raw[:120]
        return ItemScore(score.reward, score.verdicts, error=ScoreError(ScoreErrorKind.UNPARSED, detail))
    return score


class Evaluator:
    def __init__(
        self,
        predictor: Predictor,
        schema: Schema,
        budget: Budget,
        *,
        verifiers: Mapping[str, Verifier] | None = None,
        weights: Mapping[str, float] | None = None,
        scoring: Scoring = HARD,
    ) -> None:
        self.scoring = scoring
        if predictor.cache is None:
            predictor.cache = {}
        self.predictor = predictor
        self.schema = schema
        self.budget = budget
        self.verifiers = verifiers
        self.weights = weights

    def cost(self, policy: Policy, items: Sequence[GoldItem]) -> int:
        """Calls needed to score ``policy`` on ``items``: the pairs not seen before, each once, that the LLM (not
        the policy's ranker) would answer."""
        cache = self.predictor.cache
        texts = dict.fromkeys(item.input for item in items)
        unseen = [t for t in texts if item_key(policy, self.schema, t) not in cache]
        return self.predictor.llm_calls(policy, self.schema, unseen)

    def evaluate(self, policy: Policy, items: Sequence[GoldItem], reserve: int = 0) -> Evaluation | None:
        """Score ``policy`` on ``items``, or None when the budget cannot pay for the unseen pairs and ``reserve``."""
        if not self.budget.affords(self.cost(policy, items) + reserve):
            return None
        cache = self.predictor.cache
        # Unique inputs only: two gold items with the same text are one request.
        texts = list(dict.fromkeys(item.input for item in items))
        refused_before = self.budget.refused
        predictions = self.predictor.predict_many(policy, self.schema, texts, deadline=self.budget.deadline)
        timed_out = any(p.error is not None and p.error.reason is FailureReason.DEADLINE for p in predictions)
        if self.budget.refused != refused_before or timed_out:
            return None
        by_text = {}
        for text, prediction in zip(texts, predictions, strict=True):
            by_text[text] = cache.setdefault(item_key(policy, self.schema, text), prediction)
        chosen = tuple(by_text[item.input] for item in items)
        scores = [
            score_prediction(self.schema, p, item, self.verifiers, self.weights)
            for p, item in zip(chosen, items, strict=True)
        ]
        return Evaluation(policy.version, tuple(items), chosen, self._rescore(scores, chosen, items))

    def _rescore(self, scores: list[ItemScore], predictions, items: Sequence[GoldItem]) -> tuple[ItemScore, ...]:
        """Apply the run's :class:`Scoring`: soft rewards, then class-balance weights over this set."""
        scoring = self.scoring
        if scoring == HARD:
            return tuple(scores)
        hard = [s.reward for s in scores]
        if scoring.reward is Reward.SOFT:
            used = [
                0.0 if s.error else soft_reward(self.schema, s.verdicts, p.choices, p.control_scores, self.weights)
                for s, p in zip(scores, predictions, strict=True)
            ]
        else:
            used = list(hard)
        if scoring.balance:
            weights = balance_weights([item.answer for item in items], scoring.balance)
            hard = [h * w for h, w in zip(hard, weights, strict=True)]
            used = [u * w for u, w in zip(used, weights, strict=True)]
        soft = scoring.reward is Reward.SOFT
        return tuple(replace(s, reward=u, hard=h if soft else None) for s, u, h in zip(scores, used, hard, strict=True))
