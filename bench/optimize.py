"""Benchmark the optimiser on BANKING77 and GoEmotions-Ekman with the embedded model (issue 3).

For each dataset and seed: a gold set of ``--gold`` stratified training items (seeded), and one fixed stratified
sample of ``--test`` test items (the same for every seed). Four policies, each scored on the test sample:
- (a) ``initial``: the default prompt (``prompts/default.txt``), no demos;
- (b) ``naive``: the seed's loop (``bench/naive.py``): 3 epochs over all gold, every rewrite accepted;
- (c) ``ours``: ``optimizer.learning.procedure.optimize`` on the gold (75 % train / 25 % validation, no internal test);
- (d) ``ours-nodemo``: the same without demo or narrowing candidates (instruction changes only);
- (e) ``knn``: no LLM, the labels of the nearest gold items (``bench/knn.py``, k chosen on validation);
- (e') ``linear``: no LLM, TF-IDF + logistic regression on the gold (``bench/linear.py``, C chosen on validation);
- (f) ``gepa``: the ``gepa`` package searching instructions over our labeller and verifiers (``bench/gepa_run.py``,
  needs ``bench/requirements.txt``).
(b), (c), (d) and (f) get the same LLM-call budget: what the naive loop spends, 3 x gold + 3, counted the same way
(every labeller and proposer request, each (policy, item) pair paid once).

Data: ``--data DIR --datasets NAME[,NAME]`` reads ``DIR/NAME/train.jsonl``, ``DIR/NAME/test.jsonl`` (``{"text",
"labels"}`` per line) and ``DIR/NAME/labels.json``; any label count, single or multi-label (the headline metric is
accuracy for a single-label set, mean per-item F1 for a multi-label one).

The labeller and the proposer are the same embedded SmolLM2-135M (that is what runs offline). Test scoring is
cached by policy version, so a policy that several runs return (the initial prompt, typically) is scored once.
Progress is saved after every (dataset, method, seed) to ``--out``; a rerun resumes.

Test scoring of ``initial`` and ``ours`` asks for logprobs, as the product serves (``LLM_LOGPROBS``), so every test
prediction carries the score users get: the LLM's probability of its answer, or the ranker's calibrated confidence.
Each method's test metrics then include the AUROC of that score against correctness (reward >= 0.5) and the LLM
calls its policy costs per 100 served tasks.

    python -m bench.optimize --probe                 # time a few calls and estimate the full run
    python -m bench.optimize                         # the full run (hours on 2 shared cores)
    python -m bench.optimize --gold 100 --test 200 --seeds 0  # a smaller one
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

# Imported now, not on the first ranker build: a long grid then runs the ranker code it started with.
import optimizer.serving.ranking.ranker  # noqa: F401
from bench.gepa_run import run_gepa
from bench.knn import fit_knn
from bench.linear import fit_linear
from bench.naive import EPOCHS, naive_loop
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.gold import GoldItem, load_gold
from optimizer.learning.procedure import LoopConfig, optimize
from optimizer.learning.splits import split
from optimizer.learning.verifiers import label_set
from optimizer.serving import predictor as predictor_module
from optimizer.serving.llm import LLMClient, LLMConfig
from optimizer.serving.narrowing import rank_labels
from optimizer.serving.policy import Demo, Policy, load_prompt
from optimizer.serving.predictor import Predictor
from optimizer.serving.retrieval import BM25
from testkit.embedded import EmbeddedLLM, find_server_python

ROOT = Path(__file__).resolve().parent.parent
# The shared data sets sit beside the repository (../shared/data); BENCH_DATA points elsewhere.
DEFAULT_DATA = os.environ.get("BENCH_DATA", str(ROOT.parent / "shared" / "data"))
DATASETS = ("banking77", "goemotions_ekman")
METHODS = ("initial", "knn", "linear", "naive", "gepa", "ours", "ours-nodemo")
# Methods whose test predictions carry the product's scores (logprobs on), for the AUROC of score vs correctness.
SCORED = ("initial", "ours")
NO_LLM = {"knn": fit_knn, "linear": fit_linear}


def sample(items: list[GoldItem], n: int, seed: int) -> list[GoldItem]:
    """A stratified, seeded sample of ``n`` items (the train part of an n : rest split)."""
    if n >= len(items):
        return list(items)
    return list(split(items, seed, (float(n), float(len(items) - n), 0.0)).train)


def start_server(port: int, threads: int, extra: Sequence[str] = ()) -> EmbeddedLLM:
    python = find_server_python()
    if python is None:
        raise SystemExit("the embedded LLM is not built (make llm, or LLM_VENV=<venv>)")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    threads_args = ["--n_threads", str(threads), "--n_threads_batch", str(threads), *extra]
    log = ROOT / "bench" / "results" / f"llm-{port}.log"
    return EmbeddedLLM(python, port, args=threads_args, log=log).start(timeout=120)


def default_policy() -> Policy:
    """Method (a), and every other method's starting point: the product's default prompt, no demos."""
    return Policy(load_prompt("@" + str(ROOT / "prompts" / "default.txt")))


def clients(base_url: str, max_tokens: int, logprobs: bool = False) -> tuple[LLMClient, LLMClient]:
    """Labeller without logprobs by default: the loop needs labels, not confidences, and llama.cpp's logprobs triple
    a call. Test scoring of the methods whose scores are reported turns them on."""
    labeller = LLMClient(
        LLMConfig(base_url=base_url, model="smollm2-135m", response_format="llama_schema", max_tokens=max_tokens,
                  concurrency=2, timeout=300, max_retries=1, logprobs=logprobs)
    )  # fmt: skip
    proposer = LLMClient(
        LLMConfig(base_url=base_url, model="smollm2-135m", response_format="text", logprobs=False, temperature=0.7,
                  concurrency=1, timeout=600, max_retries=1)
    )  # fmt: skip
    return labeller, proposer


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.out = Path(args.out)
        self.results = json.loads(self.out.read_text()) if self.out.exists() else {}
        self.base_url = args.base_url
        self.initial = default_policy()
        self.dataset = ""
        # At most 4 retrieved demos: on this CPU a call with 4 demos takes ~5 s, with 8 ~10 s.
        self.config = LoopConfig(
            fractions=(0.75, 0.25, 0.0), proposer_max_tokens=args.proposer_tokens, max_demo_k=args.max_demo_k
        )

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, ensure_ascii=False))
        tmp.replace(self.out)

    def data(self, name: str):
        folder = Path(self.args.data) / name
        train = load_gold(folder / "train.jsonl", labels_path=folder / "labels.json")
        test = load_gold(folder / "test.jsonl", labels_path=folder / "labels.json", config=train.label_config)
        return train.schema, train.items, sample(test.items, self.args.test, 0)

    def test_score(self, ds: dict, schema, policy: Policy, test, logprobs: bool = False) -> dict:
        """Test metrics of ``policy``, computed once per policy version (and logprob setting)."""
        cache = ds.setdefault("test_by_policy", {})
        key = policy.version + ("+logprobs" if logprobs else "")
        if key not in cache:
            labeller, _ = clients(self.base_url, self.args.max_tokens, logprobs=logprobs)
            started = time.monotonic()
            with Budget(10**9).attach(labeller) as budget:
                evaluation = Evaluator(Predictor(labeller), schema, budget).evaluate(policy, test)
            cache[key] = {
                **evaluation.metrics(schema),
                **confidence(evaluation),
                "calls": budget.spent,
                "seconds": round(time.monotonic() - started, 1),
            }
            self.save()
        return cache[key]

    def narrow_probe(self, ks: list[int], seed: int = 0) -> None:
        """Test scores of the policies narrowing would propose (retrieval k=4 over the seed's training split plus
        narrowing to each k), without any search: what narrowing alone gives this labeller."""
        for name in self.args.datasets:
            schema, train, test = self.data(name)
            ds = self.results.setdefault(name, {"runs": {}})
            pool = tuple(Demo(i.input, i.answer) for i in split(sample(train, self.args.gold, seed), seed,
                                                                self.config.fractions).train)  # fmt: skip
            for k in ks:
                policy = replace(self.initial, demos=pool, demo_k=4, narrow_k=k)
                started = time.monotonic()
                metrics = self.test_score(ds, schema, policy, test)
                ds.setdefault("narrow_probe", {})[f"k={k}/{seed}"] = {"policy": policy.version, "test": metrics}
                self.save()
                print(f"{name} narrow k={k}: test reward {metrics['reward']:.3f} "
                      f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip

    def run_method(self, method: str, schema, gold, seed: int) -> tuple[Policy, dict]:
        labeller, proposer = clients(self.base_url, self.args.max_tokens)
        budget = EPOCHS * len(gold) + EPOCHS
        started = time.monotonic()
        if method == "initial":
            return self.initial, {"calls": 0, "seconds": 0.0}
        if method == "gepa":
            policy, report = run_gepa(self.initial, schema, gold, labeller, proposer, budget_calls=budget, seed=seed,
                                      max_tokens=self.args.proposer_tokens)  # fmt: skip
            calls = report["calls"]
            info = {"gepa": report, "accepted": policy.version != self.initial.version}
        elif method == "naive":
            policy, report = naive_loop(self.initial, schema, gold, labeller, proposer,
                                        max_tokens=self.args.proposer_tokens)  # fmt: skip
            calls = labeller.usage.snapshot()["calls"] + proposer.usage.snapshot()["calls"]
            info = {"self_reported": report["epochs"], "accepted": True}
        else:
            config = self.config if method == "ours" else replace(self.config, demos=False, learned=False)
            result = optimize(self.initial, schema, gold, labeller, proposer, budget_calls=budget, seed=seed,
                              config=config)  # fmt: skip
            policy, calls = result.best, result.calls
            run = result.report["run"]
            reports = self.out.parent / "reports"
            reports.mkdir(parents=True, exist_ok=True)
            (reports / f"{self.dataset}-{method}-{seed}.json").write_text(json.dumps(result.report, indent=1))
            info = {
                "accepted": result.accepted,
                "val": [run.get("initial_val", {}).get("reward"), run.get("champion_val", {}).get("reward")],
                "steps": len(run["steps"]),
                "stop": run.get("stop"),
                "invalid_proposals": run.get("invalid_proposals"),
                "promoted": [
                    c["kind"] for s in run["steps"] for c in s.get("candidates", []) if c.get("status") == "promoted"
                ],
                "candidates": candidate_rows(run),
                "rankers": run.get("rankers"),
                "refit": run.get("refit"),
            }
        usage = {"labeller": labeller.usage.snapshot(), "proposer": proposer.usage.snapshot()}
        return policy, {**info, "calls": calls, "budget": budget, "usage": usage,
                        "seconds": round(time.monotonic() - started, 1)}  # fmt: skip

    def run(self) -> None:
        for name in self.args.datasets:
            self.dataset = name
            schema, train, test = self.data(name)
            ds = self.results.setdefault(name, {"runs": {}})
            ds["sizes"] = {"gold": self.args.gold, "test": len(test)}
            ds["multiple"] = any(c.multiple for c in schema.choices)
            for seed in self.args.seeds:
                gold = sample(train, self.args.gold, seed)
                for method in self.args.methods:
                    key = f"{method}/{seed}"
                    if key in ds["runs"]:
                        continue
                    print(f"[{time.strftime('%H:%M:%S')}] {name} {key} ...", file=sys.stderr, flush=True)
                    if method in NO_LLM:
                        started = time.monotonic()
                        model, choice = NO_LLM[method](schema, gold, seed, self.config.fractions)
                        evaluation = model.evaluate(test)
                        info = {
                            method: choice,
                            "calls": 0,
                            "test": {**evaluation.metrics(schema), "llm_calls_per_100": 0},
                        }
                        info["seconds"] = round(time.monotonic() - started, 1)
                        ds["runs"][key] = info
                        self.save()
                        continue
                    policy, info = self.run_method(method, schema, gold, seed)
                    info.update(policy=policy.version, demo_k=policy.demo_k, narrow_k=policy.narrow_k,
                                mode=policy.mode.value, ranker=policy.ranker and policy.ranker.value,
                                tau=policy.tau, hide_demos=policy.hide_demos,
                                instruction=policy.instruction[:400])  # fmt: skip
                    info["test"] = self.test_score(ds, schema, policy, test, logprobs=method in SCORED)
                    ds["runs"][key] = info
                    self.save()
                    print(f"    test reward {info['test']['reward']:.3f}, calls {info['calls']}, "
                          f"{info['seconds']}s", file=sys.stderr, flush=True)  # fmt: skip


def confidence(evaluation) -> dict:
    """How much the predictions' scores mean: the AUROC of score against correctness (reward >= 0.5), and the mean
    score beside the mean reward (a calibrated score has the two close)."""
    from sklearn.metrics import roc_auc_score

    right = [s.reward >= 0.5 for s in evaluation.scores]
    scores = [p.score for p in evaluation.predictions]
    auroc = roc_auc_score(right, scores) if 0 < sum(right) < len(right) else None
    sources = Counter(p.source.value for p in evaluation.predictions)
    return {
        "auroc": round(float(auroc), 4) if auroc is not None else None,
        "mean_score": round(statistics.mean(scores), 4) if scores else None,
        "sources": dict(sources),
    }


def candidate_rows(run: dict) -> list[dict]:
    """Each candidate the run scored: kind, mode, minibatch and validation score, LLM calls per 100 served tasks."""
    keys = ("kind", "mode", "status", "minibatch", "val", "llm_calls_per_100")
    return [
        {k: c[k] for k in keys if k in c}
        for step in run.get("steps", [])
        for c in step.get("candidates", [])
        if "minibatch" in c
    ]


def multi_label(name: str, ds: dict) -> bool:
    """Result files written before ``multiple`` was recorded: BANKING77 is the single-label one."""
    return ds.get("multiple", not name.startswith("banking"))


def headline(multiple: bool, test: dict) -> float:
    """Single label (BANKING77): accuracy. Multi-label (GoEmotions): mean per-item F1 (the seed's F1)."""
    return test["reward"] if multiple else test["label"]["accuracy"]


def table(results: dict) -> str:
    head = (
        "| dataset | gold | method | test metric (mean ± sd over seeds) | per seed | macro-F1 | LLM calls / 100 tasks "
        "| AUROC | calls | wall s |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for name, ds in results.items():
        multiple = multi_label(name, ds)
        metric = "item F1" if multiple else "accuracy"
        gold = (ds.get("sizes") or {}).get("gold", "")
        for method in METHODS:
            runs = [v for k, v in sorted(ds["runs"].items()) if k.split("/")[0] == method]
            if not runs:
                continue
            scores = [headline(multiple, r["test"]) for r in runs]
            sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
            macro = statistics.mean(r["test"]["label"]["macro_f1"] for r in runs)
            served = [r["test"].get("llm_calls_per_100") for r in runs]
            served_text = f"{statistics.mean(served):.0f}" if None not in served else "-"
            aurocs = [r["test"].get("auroc") for r in runs]
            auroc_text = f"{statistics.mean(aurocs):.3f}" if aurocs and None not in aurocs else "-"
            lines.append(
                f"| {name} | {gold} | {method} | {metric} {statistics.mean(scores):.3f} ± {sd:.3f} | "
                + " ".join(f"{s:.3f}" for s in scores)
                + f" | {macro:.3f} | {served_text} | {auroc_text} | {statistics.mean(r['calls'] for r in runs):.0f} | "
                f"{statistics.mean(r['seconds'] for r in runs):.0f} |"
            )
    return "\n".join(lines)


def merge_results(files) -> dict:
    """Result files (loaded) as one: files of one dataset from separate processes (say, one per method) add up run
    by run. ``bench/tables.py`` merges the committed files the same way for bench/README.md's tables."""
    merged: dict = {}
    for results in files:
        for name, ds in results.items():
            into = merged.setdefault(name, {"runs": {}})
            into.update({k: v for k, v in ds.items() if k not in ("runs", "test_by_policy")})
            into["runs"].update(ds.get("runs", {}))
            into.setdefault("test_by_policy", {}).update(ds.get("test_by_policy", {}))
    return merged


def probe(base_url: str, data: str, max_tokens: int, datasets=DATASETS) -> None:
    """Median seconds per labelling call without demos, with 4 retrieved demos, and with narrowing on top."""
    for name in datasets:
        folder = Path(data) / name
        gold = load_gold(folder / "train.jsonl", labels_path=folder / "labels.json")
        pool = tuple(Demo(i.input, i.answer) for i in sample(gold.items, 200, 0))
        base = default_policy()
        variants = {"no demos": base, "demo_k=4": Policy(base.instruction, pool, 4),
                    "demo_k=4 narrow_k=8": Policy(base.instruction, pool, 4, narrow_k=8)}  # fmt: skip
        for label, policy in variants.items():
            labeller, _ = clients(base_url, max_tokens)
            predictor = Predictor(labeller)
            times = []
            for demo in pool[:8]:
                started = time.monotonic()
                predictor.predict(policy, gold.schema, demo.input)
                times.append(time.monotonic() - started)
            print(f"{name} {label}: median {statistics.median(times):.2f} s/call over {len(times)} "
                  f"(first {times[0]:.2f})", flush=True)  # fmt: skip


def candidate_recall(data: str, datasets, gold_n: int, test_n: int, seed: int = 0) -> None:
    """No LLM: how often narrowing's candidates contain a gold label, per k, with the seed's training split as the
    pool (what ``ours`` narrows from) and with all gold (what ``knn`` predicts from). The ceiling narrowing gives."""
    for name in datasets:
        folder = Path(data) / name
        train = load_gold(folder / "train.jsonl", labels_path=folder / "labels.json")
        test = load_gold(folder / "test.jsonl", labels_path=folder / "labels.json", config=train.label_config)
        gold = sample(train.items, gold_n, seed)
        items = sample(test.items, test_n, 0)
        control = train.schema.choices[0]
        for pool_name, pool_items in (("train split", split(gold, seed, (0.75, 0.25, 0.0)).train), ("all gold", gold)):
            pool = tuple(Demo(i.input, i.answer) for i in pool_items)
            index = BM25([d.input for d in pool])
            cells = []
            for k in (1, 2, 4, 8, 16):
                hits = 0
                for item in items:
                    ranked = rank_labels(control, pool, index, item.input, k) or control.labels
                    hits += bool(set(ranked) & set(label_set(item.answer.get(control.name))))
                cells.append(f"k={k} {hits / len(items):.2f}")
            print(f"{name} ({len(control.labels)} labels), pool {pool_name} ({len(pool)}): recall " + ", ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=list(DATASETS))
    parser.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--gold", type=int, default=200)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=64, help="labelling answer cap")
    parser.add_argument("--proposer-tokens", type=int, default=256, help="proposal cap (naive and ours)")
    parser.add_argument("--max-demo-k", type=int, default=4, help="largest retrieval size the loop may try")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint; default: start the embedded model")
    parser.add_argument("--port", type=int, default=18431)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "optimize.json"))
    parser.add_argument("--probe", action="store_true", help="time a few calls and exit")
    parser.add_argument("--recall", action="store_true", help="narrowing's candidate recall per k (no LLM), exit")
    parser.add_argument("--narrow-probe", type=lambda s: [int(x) for x in s.split(",")],
                        help="score retrieval + narrowing to each K on test, without a search, and exit")  # fmt: skip
    parser.add_argument("--hide-demos", action="store_true",
                        help="with --narrow-probe: narrow from the pool but show no demos (measurement only; use "
                             "its own --out, the versions are the same)")  # fmt: skip
    parser.add_argument("--labels-first", action="store_true",
                        help="put the label list and answer format before the instruction (measurement only; "
                             "use its own --out: the policy versions are the same)")  # fmt: skip
    parser.add_argument("--table", help="comma-separated result files: merge them into --out, print the table")
    args = parser.parse_args(argv)
    if args.table:
        merged = merge_results(json.loads(Path(path).read_text()) for path in args.table.split(","))
        Path(args.out).write_text(json.dumps(merged, indent=1, ensure_ascii=False))
        print(table(merged))
        return 0
    if args.recall:
        candidate_recall(args.data, args.datasets, args.gold, args.test)
        return 0
    server = None
    if not args.base_url:
        server = start_server(args.port, args.threads)
        args.base_url = f"http://127.0.0.1:{args.port}/v1"
    try:
        if args.probe:
            probe(args.base_url, args.data, args.max_tokens, args.datasets)
            return 0
        if args.labels_first:
            predictor_module.build_messages = labels_first
        bench = Bench(args)
        if args.narrow_probe:
            if args.hide_demos:
                # Not a policy the product can express: the prompt gets no demos, narrowing still reads the pool.
                predictor_module.select_demos = lambda policy, text: ()
            bench.narrow_probe(args.narrow_probe)
            return 0
        bench.run()
        print(table(bench.results))
    finally:
        if server is not None:
            server.stop()
    return 0


def labels_first(policy, schema, text, demos=None, narrowed=None) -> list[dict]:
    """The product's messages with the system message's two parts swapped: what every policy of a project shares
    (label list and answer format) first, so a policy switch recomputes only the instruction onward
    (``bench/prefix.py`` measures the speed; this measures what it does to held-out scores)."""
    from optimizer.serving import prompting

    messages = prompting.build_messages(policy, schema, text, demos, narrowed)
    messages[0] = {"role": "system", "content": prompting.format_spec(schema) + "\n\n" + policy.instruction.strip()}
    return messages


if __name__ == "__main__":
    sys.exit(main())
