"""GEPA (PyPI ``gepa``, see ``bench/requirements.txt``) as a baseline, run over *our* labeller and verifiers.

The comparison is meant to be about the search alone, so everything else is shared with ``ours``:
- **labeller**: GEPA's candidate is ``{"instruction": text}``; the adapter scores it as ``Policy(text)`` through our
  :class:`~optimizer.learning.evaluation.Evaluator` (the product's predictor, prompt layout, parsing and
  verifiers; the per-item reward is what our gate compares);
- **gold split**: the same seeded train/validation split of the gold as ``ours`` (GEPA's trainset feeds its
  reflection minibatches, its valset its Pareto front); test is scored outside, like every method;
- **budget**: one :class:`~optimizer.learning.budget.Budget` is attached to the labeller and to the reflection
  model, so every request either sends counts, each (policy, item) pair is paid once (the evaluator's cache), and a
  stop callback ends GEPA when the rest could not pay for one more iteration; a call the budget refuses makes the
  adapter raise, which GEPA logs and treats as a failed iteration;
- **reflection**: the same proposer client (same model, temperature, token cap) answers GEPA's own reflection
  prompt; GEPA extracts the new instruction from it as it always does.

GEPA optimises text only, so it never tries demos or narrowing: it is the strongest public instruction optimiser,
and ours should match it on instructions and add what GEPA cannot express.
"""

from __future__ import annotations

from collections.abc import Sequence

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.feedback import answer_text
from optimizer.learning.gold import GoldItem
from optimizer.learning.splits import split
from optimizer.serving.llm import LLMClient
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import Predictor

COMPONENT = "instruction"
MINIBATCH = 3
IDLE_CHECKS = 20


def load_gepa():
    try:
        import gepa
    except ImportError:
        raise SystemExit(
            "the gepa baseline needs the bench's extra packages: .venv/bin/pip install -r bench/requirements.txt"
        ) from None
    return gepa


class OverBudget(RuntimeError):
    """The shared call budget refused an evaluation; GEPA counts the iteration as failed and the stopper ends it."""


class PolicyAdapter:
    """GEPA's adapter protocol (``evaluate``, ``make_reflective_dataset``) over our evaluator."""

    # None tells GEPA to use its own reflective proposer (with our proposer client as the reflection LM).
    propose_new_texts = None

    def __init__(self, schema: Schema, evaluator: Evaluator, base: Policy) -> None:
        self.schema, self.evaluator, self.base = schema, evaluator, base

    def policy(self, candidate: dict[str, str]) -> Policy:
        return self.base.with_instruction(candidate[COMPONENT])

    def evaluate(self, batch: list[GoldItem], candidate: dict[str, str], capture_traces: bool = False):
        from gepa import EvaluationBatch

        evaluation = self.evaluator.evaluate(self.policy(candidate), batch)
        if evaluation is None:
            raise OverBudget("call budget exhausted")
        scores = [s.reward for s in evaluation.scores]
        outputs = [{**p.choices, **p.texts} for p in evaluation.predictions]
        traces = None
        if capture_traces:
            traces = [
                {"item": item, "output": out, "score": score.reward, "error": str(score.error or "")}
                for item, out, score in zip(batch, outputs, evaluation.scores, strict=True)
            ]
        return EvaluationBatch(outputs=outputs, scores=scores, trajectories=traces)

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update):
        records = []
        for trace in eval_batch.trajectories or []:
            item = trace["item"]
            verdict = "correct" if trace["score"] >= 1.0 else f"wrong (score {trace['score']:.2f})"
            feedback = (
                f"{verdict}. Expected {answer_text(item.answer)}; got {answer_text(trace['output']) or 'nothing'}"
            )
            if trace["error"]:
                feedback += f" ({trace['error']})"
            records.append(
                {"Inputs": item.input, "Generated Outputs": answer_text(trace["output"]), "Feedback": feedback}
            )
        return {name: records for name in components_to_update}


def reflection_lm(client: LLMClient, max_tokens: int):
    def call(prompt) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
        return client.complete(messages, None, max_tokens).text

    return call


def run_gepa(
    initial: Policy,
    schema: Schema,
    gold: Sequence[GoldItem],
    labeller: LLMClient,
    proposer: LLMClient,
    *,
    budget_calls: int,
    seed: int,
    max_tokens: int,
    fractions=(0.75, 0.25, 0.0),
) -> tuple[Policy, dict]:
    """GEPA's best candidate (by its own validation aggregate) as a policy, and a short report."""
    gepa = load_gepa()
    parts = split(list(gold), seed, fractions)
    budget = Budget(budget_calls)
    with budget.attach(labeller, proposer):
        evaluator = Evaluator(Predictor(labeller, cache={}), schema, budget)
        adapter = PolicyAdapter(schema, evaluator, initial)
        one_iteration = 2 * MINIBATCH + 1
        idle = {"spent": -1, "checks": 0}

        def out_of_budget(state) -> bool:
            """Stop when one more iteration is unaffordable, or when iterations stop costing anything (every
            proposal failed or repeated a cached candidate), which would otherwise loop forever."""
            idle["checks"] = idle["checks"] + 1 if budget.spent == idle["spent"] else 0
            idle["spent"] = budget.spent
            return budget.remaining < one_iteration or idle["checks"] >= IDLE_CHECKS

        result = gepa.optimize(
            seed_candidate={COMPONENT: initial.instruction},
            trainset=list(parts.train),
            valset=list(parts.val),
            adapter=adapter,
            reflection_lm=reflection_lm(proposer, max_tokens),
            reflection_minibatch_size=MINIBATCH,
            stop_callbacks=[out_of_budget],
            raise_on_exception=False,
            display_progress_bar=False,
            seed=seed,
            logger=_Quiet(),
        )
    best = adapter.policy(result.best_candidate)
    scores = list(result.val_aggregate_scores)
    report = {
        "candidates": len(result.candidates),
        "val": [round(scores[0], 6), round(scores[result.best_idx], 6)] if scores else None,
        "calls": budget.spent,
        "split": parts.sizes(),
    }
    return best, report


class _Quiet:
    """GEPA logs every iteration to stdout by default; the bench keeps only its own progress lines."""

    def log(self, *args, **kwargs) -> None:
        pass
