"""The ``optimize`` and ``evaluate`` subcommands.

``optimize`` runs :func:`optimizer.learning.procedure.optimize` on a gold file and writes, in ``--out``:
- ``optimized_prompt.txt``: the winning instruction (the seed's output, for parity);
- ``policy.json``: the whole policy (instruction and demos), loadable with ``--policy``;
- ``report.json``: every step's candidates with minibatch and validation scores, accepted or rejected and why, the
  test scores of the initial and the returned policy, and the LLM calls and tokens spent.

``evaluate`` scores one policy on a split of the same gold and prints the metrics as JSON. For 30 or more items it
is the split ``optimize`` uses with the same seed; smaller gold is optimised with repeated folds instead, and
``evaluate`` then uses the same 60/20/20 split rule on it.

Both use the labelling endpoint from the settings (``LLM_BASE_URL``...; the embedded model by default);
``optimize`` sends proposals to the optimiser endpoint (``OPTIMIZER_BASE_URL``..., else the same one).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from optimizer.cli.progress import ProgressBar
from optimizer.labelstudio.labelconfig import LabelConfigError
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.gold import GoldError, GoldSet, load_gold
from optimizer.learning.procedure import LoopConfig, optimize
from optimizer.learning.rewards import Reward, scoring_for
from optimizer.learning.splits import split
from optimizer.logconfig import public_url
from optimizer.serving.llm import LLMClient
from optimizer.serving.llm_errors import LLMUnavailable
from optimizer.serving.policy import Policy, load_prompt
from optimizer.serving.predictor import Predictor
from optimizer.settings import load_settings


def _gold_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gold", required=True, help="gold file: JSON Lines, the seed's JSON, or an LS export")
    parser.add_argument("--labels", help="JSON list of label names (plain gold files; default: labels in the gold)")
    parser.add_argument("--config", help="label config XML file (required for a Label Studio export)")
    parser.add_argument("--prompt", help="initial instruction: text or @file (default: DEFAULT_PROMPT)")
    parser.add_argument("--policy", help="a policy.json written by optimize (instruction and demos)")
    parser.add_argument("--seed", type=int, default=0, help="seed for splits and minibatches (default 0)")


def register(subparsers) -> None:
    opt = subparsers.add_parser("optimize", help="optimise a prompt policy against gold data")
    _gold_args(opt)
    opt.add_argument("--budget", type=int, default=300, help="LLM calls allowed, labeller and proposer (default 300)")
    opt.add_argument("--max-seconds", type=float, help="wall-time limit in seconds")
    opt.add_argument("--out", default="out", help="output directory (default ./out)")
    opt.add_argument("--no-demos", action="store_true", help="instruction changes only, no few-shot demos")
    opt.add_argument("--minibatch", type=int, default=LoopConfig.minibatch, help="training items per step")
    opt.add_argument("--candidates", type=int, default=LoopConfig.candidates, help="candidates per step (2-4)")
    opt.add_argument(
        "--reward",
        choices=[r.value for r in Reward],
        default=Reward.HARD.value,
        help="per-item reward: hard (0/1 verifier) or soft (probability of the gold answer; needs logprobs)",
    )
    opt.add_argument("--quiet", action="store_true", help="no progress bar")
    opt.set_defaults(func=run_optimize)

    ev = subparsers.add_parser("evaluate", help="score a policy on a split of gold data")
    _gold_args(ev)
    ev.add_argument("--split", choices=("test", "val", "train", "all"), default="test", help="which part to score")
    ev.set_defaults(func=run_evaluate)


# A batch run stops once this many calls failed on connection or auth with none answered (see LLMUnavailable).
FAIL_FAST_AFTER = 3
EXIT_UNAVAILABLE = 3


def scoring_client(settings, logprobs: bool = False) -> LLMClient:
    """The labeller as configured, minus logprobs unless soft rewards need them: hard verifiers need labels, not
    confidences, and llama.cpp's logprobs make a call about three times slower. The labels themselves do not change
    (same prompt, same decoding)."""
    config = settings.labeller_config()
    return LLMClient(replace(config, logprobs=logprobs and settings.llm_logprobs, fail_fast_after=FAIL_FAST_AFTER))


def probe_all(*clients: LLMClient) -> None:
    """Probe each distinct endpoint once, before any budget is spent; raises :class:`LLMUnavailable`."""
    for base_url in dict.fromkeys(c.config.base_url for c in clients):
        next(c for c in clients if c.config.base_url == base_url).probe()


def _unavailable(exc: LLMUnavailable) -> int:
    print("error: " + str(exc), file=sys.stderr)
    return EXIT_UNAVAILABLE


def _fail(message: str) -> int:
    print("error: " + message, file=sys.stderr)
    return 2


def _load(args) -> tuple[GoldSet, Policy]:
    config = Path(args.config).read_text(encoding="utf-8") if args.config else None
    gold = load_gold(args.gold, config=config, labels_path=args.labels)
    if not gold.items:
        raise GoldError("the gold file has no usable items")
    if args.policy:
        policy = Policy.from_json(Path(args.policy).read_text(encoding="utf-8"))
    else:
        from optimizer.runtime.services import resolve_prompt  # the same DEFAULT_PROMPT lookup as the web service

        policy = Policy(load_prompt(args.prompt) if args.prompt else resolve_prompt(load_settings().default_prompt))
    return gold, policy


def run_optimize(args) -> int:
    try:
        gold, initial = _load(args)
        config = LoopConfig(minibatch=args.minibatch, candidates=args.candidates, demos=not args.no_demos)
    except (GoldError, LabelConfigError, OSError, ValueError) as exc:
        return _fail(str(exc))
    settings = load_settings()
    soft = args.reward == Reward.SOFT
    labeller = scoring_client(settings, logprobs=soft)
    proposer = LLMClient(replace(settings.proposer_config(), fail_fast_after=FAIL_FAST_AFTER))
    try:
        probe_all(labeller, proposer)
    except LLMUnavailable as exc:
        return _unavailable(exc)
    bar = None if args.quiet else ProgressBar()
    try:
        result = optimize(
            initial,
            gold.schema,
            gold.items,
            labeller,
            proposer,
            budget_calls=args.budget,
            seed=args.seed,
            max_seconds=args.max_seconds,
            progress=bar,
            config=config,
            scoring=scoring_for(gold.schema, args.reward),
        )
    except LLMUnavailable as exc:  # the endpoint died during the run: no report, as nothing was measured
        return _unavailable(exc)
    finally:
        if bar:
            bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        **result.report,
        "gold": {"path": str(args.gold), "format": gold.format, "items": len(gold.items), "skipped": gold.skipped},
        "label_config": gold.label_config,
        "labeller": {"base_url": public_url(labeller.config.base_url), "model": labeller.config.model},
        "proposer": {"base_url": public_url(proposer.config.base_url), "model": proposer.config.model},
    }
    (out / "optimized_prompt.txt").write_text(result.best.instruction.rstrip() + "\n", encoding="utf-8")
    (out / "policy.json").write_text(json.dumps(result.best.to_dict(), indent=2, ensure_ascii=False) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    test = report["test"]
    # Held-out scores are the hard verifier's, whatever reward drove the search.
    first, best = ((test[k] or {}).get("hard_reward", (test[k] or {}).get("reward")) for k in ("initial", "best"))
    verdict = "promoted" if result.accepted else "kept the initial policy"
    print(f"{verdict}: {result.best.version}; test reward {first} -> {best}; {result.calls} calls; wrote {out}/")
    return 0


def run_evaluate(args) -> int:
    try:
        gold, policy = _load(args)
    except (GoldError, LabelConfigError, OSError, ValueError) as exc:
        return _fail(str(exc))
    items = split(gold.items, args.seed).part(args.split)
    if not items:
        return _fail(f"the {args.split} split is empty")
    labeller = scoring_client(load_settings())
    budget = Budget(calls=10**9)
    try:
        probe_all(labeller)
        with budget.attach(labeller):
            evaluation = Evaluator(Predictor(labeller, cache={}), gold.schema, budget).evaluate(policy, items)
    except LLMUnavailable as exc:
        return _unavailable(exc)
    result = {
        "policy": policy.version,
        "split": args.split,
        "seed": args.seed,
        "metrics": evaluation.metrics(gold.schema) if evaluation else None,
        "calls": budget.spent,
    }
    print(json.dumps(result, indent=2))
    return 0
