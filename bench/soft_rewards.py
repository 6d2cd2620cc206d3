"""Soft against hard rewards for optimising an LLM judge (issue 12, item 4), on the BANKING77-derived graded set.

Two questions, both at the same call budget and over 3 seeds:

1. **Gate agreement.** For random (parent, candidate) judge instructions, does the minibatch gate's decision on
   20 training items ("candidate beats parent": summed reward strictly higher) agree with the decision on 200
   held-out items ("candidate's hard balanced accuracy is higher")? Measured with the soft reward and with the hard
   one on the *same* minibatches.
2. **Held-out score reached.** ``optimize`` on 60 graded items with ``--reward soft`` and ``hard`` at the same call
   budget; the returned judge is scored on the 200 held-out items by hard balanced accuracy (and kappa).

Data: ``bench.graded`` builds the graded rows from ``../shared/data/banking77`` (train split for the gold, test
split for the held-out 200), about 65 % "Good", scored with the balanced verifier exactly as a training job does.

Model: the scripted judge below, over real HTTP through the real predictor, parser and logprob scoring. Its
quality is a property of the instruction (a hash gives each instruction a skill), items have a difficulty, and on
each (instruction, item) it is right with probability ``q = sigmoid(skill - difficulty + noise)``; it reports the
chosen grade's probability over-confidently (``sigmoid(1.5 · logit)``), as small models do. So soft rewards carry
real but imperfect information. ``--embedded`` adds question 1 with SmolLM2-135M on fewer items (slow: the one-
at-a-time server with logprobs runs about 1 call/s here).

    python -m bench.soft_rewards                 # scripted judge, 3 seeds (about 1 minute on 2 cores)
    python -m bench.soft_rewards --embedded      # also the embedded model (tens of minutes on a busy machine)
    python -m bench.soft_rewards --embedded-only --embedded-parts optimise --embedded-held 60 --embedded-budget 80
    python -m bench.soft_rewards --embedded-only --embedded-parts choose --choose-gold 200 --embedded-held 200

3. **The chosen judge** (``--embedded-parts choose``, issue 22): ``optimize`` as a training job runs it on a
   reward-scoring project, learned answers on: the LLM judge, the reward model (the ranker over (prompt, response)
   trained on the grades) and cascades of the two compete by balanced accuracy on validation; the returned judge
   is scored on the held-out grades (balanced accuracy, kappa, AUROC of its probability of "Good"), beside the LLM
   judge and the reward model alone (trained on all the gold).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.graded import build, confusable, load
from optimizer.labelstudio.judge import judge_shape
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.labelstudio.render import render_input
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.gold import GoldItem
from optimizer.learning.procedure import LoopConfig, optimize
from optimizer.learning.rewards import Reward, Scoring
from optimizer.learning.rlvr import best_probability
from optimizer.serving.llm import LLMClient, LLMConfig
from optimizer.serving.modes import Mode, RankerKind
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.predictor import Predictor
from testkit.constants import REWARD_CONFIG
from testkit.fakellm import FakeLLM, Reply, labels_from_system, last_user
from testkit.scripted import instruction_of, varied_proposer

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = parse_label_config(REWARD_CONFIG)
JUDGE = (ROOT / "prompts" / "judge.txt").read_text(encoding="utf-8").strip()
SEEDS = (0, 1, 2)
MINIBATCH, HELD_OUT, GOLD = 20, 200, 60
EMBEDDED_BUDGET = 150


def uniform(*parts: str) -> float:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return (int(digest[:12], 16) + 0.5) / 16**12


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class CalibratedJudge:
    """The scripted judge described in the module docstring; the proposer writes a new variant per request."""

    def __init__(self, rows: list[dict]):
        self.truth = {item_text(r): r["reward"] for r in rows}
        self.propose = varied_proposer("Grade the response against the prompt strictly.")

    @staticmethod
    def skill(instruction: str) -> float:
        return -0.2 if instruction == JUDGE else -1.0 + 2.5 * uniform("skill", instruction)

    def __call__(self, body: dict) -> Reply:
        controls = labels_from_system(body)
        if not controls:
            return self.propose(body)
        text, instruction = last_user(body), instruction_of(body)
        gold = self.truth.get(text, "1")
        difficulty = logit(uniform("difficulty", text)) * 0.8
        q = sigmoid(self.skill(instruction) + 1.0 - difficulty + 0.7 * logit(uniform("noise", instruction, text)))
        right = uniform("draw", instruction, text) < q
        grade = gold if right else ("0" if gold == "1" else "1")
        chosen = q if right else 1 - q
        reported = min(0.999, max(0.001, sigmoid(1.5 * logit(min(0.999, max(0.001, chosen))))))
        # The predictor scores the label span '"1"', three scripted tokens: spread the log-probability over them.
        return Reply(json.dumps({name: grade for name in controls}), logprob=math.log(reported) / 3)


def item_text(row: dict) -> str:
    return render_input(SCHEMA, {"prompt": row["prompt"], "response": row["response"]})


def items(rows: list[dict], tag: str) -> list[GoldItem]:
    return [GoldItem(f"{tag}{i}", item_text(r), {"reward": [r["reward"]]}) for i, r in enumerate(rows)]


def scoring(reward: Reward) -> Scoring:
    return Scoring(reward, balance="reward")


def client(base_url: str, concurrency: int = 8, logprobs: bool = True) -> LLMClient:
    return LLMClient(
        LLMConfig(base_url=base_url, api_key="x", model="fake", concurrency=concurrency, logprobs=logprobs)
    )


# --- 1. gate agreement -----------------------------------------------------------------------------------------------


def gate_agreement(labeller: LLMClient, pool: list[GoldItem], held: list[GoldItem], policies, pairs: int, seed: int):
    """Per reward: share of (parent, candidate) pairs whose 20-item gate decision matches the held-out decision."""
    rng = random.Random(f"gate:{seed}")
    # One answer cache for both rewards: they differ only in how the same answers are scored.
    predictor = Predictor(labeller, cache={})
    evaluators = {r: Evaluator(predictor, SCHEMA, Budget(10**7), scoring=scoring(r)) for r in Reward}
    truth_eval = evaluators[Reward.HARD]
    held_ba = {p.version: truth_eval.evaluate(p, held).mean for p in policies}
    agree = {r: 0 for r in Reward}
    ties = {r: 0 for r in Reward}
    counted = 0
    for _ in range(pairs):
        parent, candidate = rng.sample(policies, 2)
        truth = held_ba[candidate.version] > held_ba[parent.version] + 1e-9
        if abs(held_ba[candidate.version] - held_ba[parent.version]) < 1e-9:
            continue
        batch = rng.sample(pool, MINIBATCH)
        counted += 1
        for reward, evaluator in evaluators.items():
            diff = sum(evaluator.evaluate(candidate, batch).rewards.values()) - sum(
                evaluator.evaluate(parent, batch).rewards.values()
            )
            ties[reward] += abs(diff) < 1e-9
            agree[reward] += (diff > 1e-9) == truth
    initial = round(held_ba[policies[0].version], 4)
    # Every pair can tie on held-out (a model that grades everything alike): then there is nothing to agree with.
    agreement = {r.value: round(agree[r] / counted, 4) if counted else None for r in Reward}
    return agreement, {r.value: ties[r] for r in Reward}, counted, initial


# --- 2. held-out score reached ---------------------------------------------------------------------------------------


def held_out_evaluator(labeller: LLMClient) -> Evaluator:
    """Hard balanced accuracy on the held-out items, one answer cache per model so each policy is scored once."""
    return Evaluator(Predictor(labeller, cache={}), SCHEMA, Budget(10**7), scoring=scoring(Reward.HARD))


def held_out(judge: Evaluator, policy: Policy, held: list[GoldItem]) -> dict:
    scored = judge.evaluate(policy, held)
    metrics = scored.metrics(SCHEMA)["controls"]["reward"]
    out = {"balanced_accuracy": round(scored.mean, 4), "kappa": round(metrics["kappa"], 4)}
    return {**out, "failed": scored.metrics(SCHEMA)["failed"], "said_good": said_good(scored)}


def said_good(scored) -> float:
    """Share of items the judge graded "1": how close it is to the always-Good judge."""
    return round(sum(p.choices.get("reward") == ["1"] for p in scored.predictions) / len(scored.predictions), 3)


def optimise(labeller, proposer, judge: Evaluator, gold, held, reward: Reward, seed: int, budget: int, demos=False):
    # Instruction (and demo) changes only: this question is about soft against hard rewards for the LLM judge.
    # Choosing between the LLM judge and a learned reward model is ``choose_judge``'s question.
    config = LoopConfig(minibatch=MINIBATCH, demos=demos, label_guide=False, patience=6, learned=False)
    result = optimize(
        Policy(JUDGE),
        SCHEMA,
        gold,
        labeller,
        proposer,
        budget_calls=budget,
        seed=seed,
        config=config,
        scoring=scoring(reward),
    )
    before, after = held_out(judge, Policy(JUDGE), held), held_out(judge, result.best, held)
    return {
        "held_out_balanced_accuracy": after["balanced_accuracy"],
        "held_out_kappa": after["kappa"],
        "initial": before,
        "promoted": result.accepted,
        "calls": result.calls,
        "steps": len(result.report["run"].get("steps", [])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60, help="(parent, candidate) pairs per seed")
    parser.add_argument("--policies", type=int, default=24, help="random judge instructions per seed")
    parser.add_argument("--budget", type=int, default=400, help="LLM calls per optimisation run")
    parser.add_argument("--embedded", action="store_true", help="also measure with SmolLM2-135M")
    parser.add_argument("--embedded-only", action="store_true", help="skip the scripted judge")
    parser.add_argument("--embedded-parts", default="gate,optimise", help="gate, optimise or both (comma-separated)")
    parser.add_argument("--embedded-held", type=int, default=100, help="held-out items for the embedded model")
    parser.add_argument("--embedded-budget", type=int, default=EMBEDDED_BUDGET, help="calls per embedded run")
    parser.add_argument("--choose-gold", type=int, default=200, help="graded items per seed for the chosen judge")
    parser.add_argument("--choose-seeds", type=lambda v: [int(x) for x in v.split(",")], default=list(SEEDS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soft_rewards.json")
    args = parser.parse_args(argv)
    source = load("train")
    nearest = confusable(source)
    started = time.monotonic()
    results: dict = {"gate": {}, "optimise": {}, "sizes": {"minibatch": MINIBATCH, "held_out": HELD_OUT, "gold": GOLD}}
    for seed in () if args.embedded_only else SEEDS:
        gold_rows = build(source, GOLD, seed=seed, nearest=nearest)
        held_rows = build(load("test"), HELD_OUT, seed=100 + seed, nearest=nearest)
        gold, held = items(gold_rows, "g"), items(held_rows, "h")
        with FakeLLM(CalibratedJudge(gold_rows + held_rows)) as fake:
            labeller = client(fake.base_url)
            policies = [Policy(JUDGE)] + [
                Policy(f"Grade the response against the prompt. Variant {seed}-{k}.") for k in range(args.policies)
            ]
            agreement, ties, counted, initial = gate_agreement(labeller, gold, held, policies, args.pairs, seed)
            results["gate"][seed] = {"agreement": agreement, "ties": ties, "pairs": counted, "initial": initial}
            print(
                f"seed {seed} gate agreement (20 vs 200): {agreement}  ties {ties}  pairs {counted}; "
                f"judge default held-out balanced accuracy {initial}",
                flush=True,
            )
            runs = {}
            judge = held_out_evaluator(labeller)
            for reward in Reward:
                proposer = client(fake.base_url, logprobs=False)
                runs[reward.value] = optimise(
                    client(fake.base_url), proposer, judge, gold, held, reward, seed, args.budget
                )
                print(f"seed {seed} {reward.value}: {runs[reward.value]}", flush=True)
            results["optimise"][seed] = runs
    if args.embedded or args.embedded_only:
        parts = set(args.embedded_parts.split(","))
        results["embedded"] = embedded(source, nearest, parts, args.embedded_held, args.embedded_budget,
                                       gold=args.choose_gold, seeds=args.choose_seeds)  # fmt: skip
    results["seconds"] = round(time.monotonic() - started, 1)
    summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def summarise(results: dict) -> None:
    if results["gate"]:
        print("\n" + scripted_table(results))
    if "embedded" in results:
        print("embedded SmolLM2-135M:", json.dumps(results["embedded"]))
    print(f"{results['seconds']} s")


def scripted_table(results: dict) -> str:
    """The scripted judge's table (bench/README.md shows it, generated by ``bench/tables.py`` from the JSON)."""
    lines = ["| reward | gate agreement 20 vs 200 (median of seeds) | held-out balanced accuracy (median) | kappa |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for reward in Reward:
        gate = [results["gate"][s]["agreement"][reward.value] for s in results["gate"]]
        runs = [results["optimise"][s][reward.value] for s in results["optimise"]]
        ba = [r["held_out_balanced_accuracy"] for r in runs]
        kappa = [r["held_out_kappa"] for r in runs]
        lines.append(
            f"| {reward.value} | {statistics.median(gate):.3f} ({', '.join(f'{g:.3f}' for g in gate)}) "
            f"| {statistics.median(ba):.3f} ({', '.join(f'{b:.3f}' for b in ba)}) "
            f"| {statistics.median(kappa):.3f} |"
        )
    initial = [results["gate"][s]["initial"] for s in results["gate"]]
    held = ", ".join(f"{i:.3f}" for i in initial)
    lines += ["", f"Judge default (start of every run), held-out balanced accuracy: {held}."]
    return "\n".join(lines)


def choose_judge(labeller, proposer, judge: Evaluator, source, nearest, seed: int, gold_n: int, held_n: int, budget):
    """Question 3 for one seed: which judge the loop chooses, and how it does on held-out grades."""
    gold = items(build(source, gold_n, seed=seed, nearest=nearest), f"c{seed}-")
    held = items(build(load("test"), held_n, seed=100 + seed, nearest=nearest), f"ch{seed}-")
    config = LoopConfig(minibatch=MINIBATCH, label_guide=False, patience=4, fractions=(0.75, 0.25, 0.0))
    started = time.monotonic()
    result = optimize(Policy(JUDGE), SCHEMA, gold, labeller, proposer, budget_calls=budget, seed=seed,
                      config=config, scoring=scoring(Reward.HARD))  # fmt: skip
    pool = tuple(Demo(item.input, item.answer) for item in gold)
    reward_model = Policy(JUDGE, pool, mode=Mode.RANKER, ranker=RankerKind.LINEAR)
    out = {"gold": len(gold), "held_out": len(held), "calls": result.calls, "promoted": result.accepted}
    for name, policy in (("chosen", result.best), ("llm_judge", Policy(JUDGE)), ("reward_model", reward_model)):
        scored = judge.evaluate(policy, held)
        metrics = scored.metrics(SCHEMA)["controls"]["reward"]
        out[name] = {
            "mode": policy.mode.value,
            "ranker": policy.ranker and policy.ranker.value,
            "tau": policy.tau if policy.mode is Mode.CASCADE else None,
            "balanced_accuracy": round(scored.mean, 4),
            "kappa": round(metrics["kappa"], 4),
            "said_good": said_good(scored),
            "llm_calls_per_100": scored.llm_per_100,
            "auroc_good": good_auroc(scored),
        }
    out["candidates"] = [
        {k: c[k] for k in ("kind", "mode", "status", "minibatch", "val", "llm_calls_per_100") if k in c}
        for step in result.report["run"]["steps"]
        for c in step.get("candidates", [])
        if "minibatch" in c
    ]
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def good_auroc(scored) -> float | None:
    """AUROC of the judge's probability of "Good" (``rlvr.best_probability`` of its grade and score, the soft
    reward the RLVR export writes) against the human grade."""
    from sklearn.metrics import roc_auc_score

    shape = judge_shape(SCHEMA)
    good = [item.answer["reward"][0] == shape.best for item in scored.items]
    p = [
        best_probability(shape, pred.choices["reward"][0], pred.score) if pred.choices.get("reward") else 0.5
        for pred in scored.predictions
    ]
    return round(float(roc_auc_score(good, p)), 4) if 0 < sum(good) < len(good) else None


def embedded(source: list[dict], nearest: dict, parts: set[str], held_n: int, budget: int, **choose) -> dict:
    """Both questions with the real embedded model, smaller: 4 hand-written judge instructions for the gate
    (20-item gates against 100 held-out items), and one seed of soft and hard optimisation (40 gold, demos on)."""
    from testkit.embedded import EmbeddedLLM, find_server_python

    python = find_server_python()
    if python is None:
        print("embedded model not built (make llm); skipping", file=sys.stderr)
        return {"skipped": "no .venv-llm"}
    rows = build(source, 40, seed=7, nearest=nearest)
    held_rows = build(load("test"), held_n, seed=107, nearest=nearest)
    gold, held = items(rows, "eg"), items(held_rows, "eh")
    instructions = [
        JUDGE,
        "Answer 1 if the response is correct for the prompt, else 0.",
        "Does the response name what the customer asks about? 1 for yes, 0 for no.",
        "You grade answers. Be harsh: only a clearly matching answer gets 1.",
    ]
    out: dict = {"held_out": held_n, "gold": len(gold)}
    server = EmbeddedLLM(python).start()
    try:

        def model(logprobs: bool = True) -> LLMClient:
            # One request at a time with a long timeout: the server computes one at a time and keeps computing a
            # request its client gave up on, so timeouts and retries on a busy machine only pile work up.
            config = LLMConfig(
                base_url=server.base_url, api_key="x", model="smollm2-135m", concurrency=1, timeout=180, max_retries=0
            )
            return LLMClient(replace(config, logprobs=logprobs, max_tokens=24 if logprobs else 256))

        labeller = model()
        if "gate" in parts:
            policies = [Policy(text) for text in instructions]
            agreement, ties, counted, initial = gate_agreement(labeller, gold, held, policies, pairs=12, seed=7)
            out.update(agreement=agreement, ties=ties, pairs=counted, judge_default_ba=initial)
            print(f"embedded gate agreement (20 vs {held_n}): {agreement} ties {ties} pairs {counted}", flush=True)
        judge = held_out_evaluator(labeller)
        for seed in choose["seeds"] if "choose" in parts else ():
            run = choose_judge(model(), model(False), judge, source, nearest, seed, choose["gold"], held_n, budget)
            out.setdefault("choose", {})[seed] = run
            print(f"embedded choose seed {seed}: {json.dumps(run)}", flush=True)
        for reward in Reward if "optimise" in parts else ():
            run = optimise(model(), model(False), judge, gold, held, reward, 0, budget, demos=True)
            out[reward.value] = run
            print(f"embedded {reward.value}: {run}", flush=True)
    finally:
        server.stop()
    return out


if __name__ == "__main__":
    raise SystemExit(main())
