"""``optimize``: the verifier-driven, gated optimisation of a prompt policy against gold items.

The public entry point for the CLI and the training job. It owns the run-wide pieces (the call and wall-time
budget, attached to both LLM clients; the (policy, item) cache; the proposal checker) and decides how gold is used:

- **enough gold** (at least ``splits.SMALL_GOLD`` items): one stratified, seeded train/validation/test split and
  one :class:`~optimizer.learning.search.Search`. Test is scored only after the search, for the initial policy and the
  champion.
- **small gold**: a fixed split would leave a handful of validation and test items, so the test figures come from
  repeated folds instead (nested cross-validation): for each of ``config.folds`` stratified folds, a search runs
  on the other folds (its own train/validation split) and both the initial policy and that search's champion are
  scored on the held-out fold. The reported test scores are the means over folds: an honest estimate of what the
  procedure gains on unseen items. The returned policy comes from a final search on all gold (no test split).
  Each fold's search gets ``1/(folds + 1)`` of the budget, the final search the rest.

``accepted`` is True only when the returned policy differs from ``initial``, i.e. it passed the promotion rule
against ``initial``'s champion line on validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.gold import GoldItem
from optimizer.learning.loop_config import LoopConfig
from optimizer.learning.proposer import GoldText
from optimizer.learning.rewards import HARD, Scoring
from optimizer.learning.search import Search
from optimizer.learning.splits import SMALL_GOLD, folds, split
from optimizer.learning.steps import describe
from optimizer.learning.verifiers import Verifier
from optimizer.serving.llm import LLMClient
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import Predictor

__all__ = ["LoopConfig", "OptimizeResult", "optimize"]


@dataclass
class OptimizeResult:
    initial: Policy
    best: Policy
    accepted: bool
    report: dict
    calls: int


def _since(client: LLMClient, before: dict[str, int]) -> dict[str, int]:
    """This run's share of a client's usage counters (a worker may reuse one client for many runs)."""
    now = client.usage.snapshot()
    return {name: now[name] - before.get(name, 0) for name in now}


def optimize(
    initial: Policy,
    schema: Schema,
    gold: Sequence[GoldItem],
    labeller: LLMClient,
    proposer: LLMClient,
    *,
    budget_calls: int,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: Callable[[dict], None] | None = None,
    config: LoopConfig | None = None,
    verifiers: Mapping[str, Verifier] | None = None,
    weights: Mapping[str, float] | None = None,
    scoring: Scoring = HARD,
) -> OptimizeResult:
    """Optimise ``initial`` on ``gold`` within ``budget_calls`` LLM calls (labeller and proposer together)."""
    config = config or LoopConfig()
    gold = list(gold)
    if not gold:
        raise ValueError("no gold items to optimise on")
    started = time.monotonic()
    budget = Budget(budget_calls, max_seconds)
    gold_text = GoldText(gold)
    before = {"labeller": labeller.usage.snapshot(), "proposer": proposer.usage.snapshot()}
    with budget.attach(labeller, proposer):
        evaluator = Evaluator(
            Predictor(labeller, cache={}), schema, budget, verifiers=verifiers, weights=weights, scoring=scoring
        )

        def search(tag: str) -> Search:
            return Search(
                schema=schema,
                evaluator=evaluator,
                proposer=proposer,
                budget=budget,
                config=config,
                seed=seed,
                gold_text=gold_text,
                progress=progress,
                tag=tag,
            )

        report: dict = {
            "seed": seed,
            "budget_calls": budget_calls,
            "max_seconds": max_seconds,
            "config": config.to_dict(),
            "gold_items": len(gold),
            "verifier": scoring.verifier,
            "reward": scoring.reward.value,
            "initial": describe(initial),
        }
        if len(gold) >= SMALL_GOLD:
            parts = split(gold, seed, config.fractions)
            report["mode"] = "split"
            report["split"] = parts.sizes()
            best, run = search("main").run(initial, parts.train, parts.val, parts.test)
            report["run"] = run
            test = {"initial": run.get("initial_test"), "best": run.get("champion_test")}
        else:
            best, test = _small_gold(initial, gold, config, seed, budget, search, report)
        accepted = best.version != initial.version
        val = report["run"].get("champion_val") or {}
        first_val = report["run"].get("initial_val") or {}
        best = best.with_meta(
            parent=initial.version,
            val_score=val.get("reward"),
            initial_val_score=first_val.get("reward"),
            test_score=(test["best"] or {}).get("reward"),
            initial_test_score=(test["initial"] or {}).get("reward"),
            seed=seed,
        )
        report.update(
            best=describe(best),
            accepted=accepted,
            test=test,
            calls=budget.spent,
            # ``calls`` counts requests sent; usage ``calls`` also counts those the budget refused before sending.
            usage={"labeller": _since(labeller, before["labeller"]), "proposer": _since(proposer, before["proposer"])},
            timing={"seconds": round(time.monotonic() - started, 3)},
        )
    return OptimizeResult(initial, best, accepted, report, budget.spent)


def _small_gold(initial, gold, config: LoopConfig, seed: int, budget: Budget, search, report: dict):
    """Nested cross-validation for the test estimate, then a final search on all gold (see module docstring)."""
    parts = folds(gold, config.folds, seed)
    share = budget.calls // (len(parts) + 1)
    inner_fractions = (2.0, 1.0, 0.0)
    report["mode"] = "folds"
    report["note"] = (
        f"small gold ({len(gold)} < {SMALL_GOLD} items): test scores are means over {len(parts)} held-out folds "
        "(each fold's search never saw its fold); the returned policy comes from a final search on all gold"
    )
    fold_reports, firsts, bests = [], [], []
    for index, held_out in enumerate(parts):
        held = {item.id for item in held_out}
        rest = [item for item in gold if item.id not in held]
        inner = split(rest, seed, inner_fractions)
        budget.cap(share)
        _, run = search(f"fold{index + 1}").run(initial, inner.train, inner.val, held_out)
        fold_reports.append(run)
        if run.get("initial_test") and run.get("champion_test"):
            # Held-out figures are always the hard verifier's, whatever reward drove the search.
            firsts.append(run["initial_test"].get("hard_reward", run["initial_test"]["reward"]))
            bests.append(run["champion_test"].get("hard_reward", run["champion_test"]["reward"]))
    budget.cap(None)
    final = split(gold, seed, inner_fractions)
    best, run = search("final").run(initial, final.train, final.val, ())
    report["folds"] = fold_reports
    report["run"] = run
    n = len(firsts)
    test = {
        "initial": {"reward": round(sum(firsts) / n, 6), "folds": n} if n else None,
        "best": {"reward": round(sum(bests) / n, 6), "folds": n} if n else None,
    }
    return best, test
