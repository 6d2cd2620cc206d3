"""Seconds per labelling call on the embedded model: the optimiser's call pattern against the naive loop's.

The naive loop labels all gold with one policy, so every call after the first reuses the server's cached prefix
(the system message: instruction, every label, the answer format). The optimiser alternates: a parent on a
minibatch, then each candidate on the same minibatch, with proposer calls in between. llama.cpp keeps only the
previous prompt's state, so each switch recomputes the whole system message (for BANKING77's 77 labels, ~700
tokens). ``--cache`` (llama_cpp.server's prompt cache, a RAM store of earlier states looked up by longest common
prefix) lets a switch back restore the policy's state instead.

For each server setting this measures, on the same items: the naive pattern (one policy, 16 items) and the
optimiser's (policies A, B, A, B on two minibatches of 8, a proposer-sized call between them), and prints the
median and mean seconds per call of each, side by side. A third line, not a product setting, sends the same calls
with the label list *before* the instruction (``--labels-first``): the part every policy of a project shares
then leads the prompt, and a policy switch recomputes only the instruction onward.

    python -m bench.prefix [--dataset banking77] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.optimize import DEFAULT_DATA, clients, default_policy, sample, start_server
from optimizer.learning.gold import load_gold
from optimizer.serving.predictor import Predictor
from optimizer.serving.prompting import answer_token_cap, format_spec, json_schema

SETTINGS = {
    "no prompt cache": ([], False),
    "--cache": (["--cache", "True", "--cache_size", str(1 << 30)], False),
    "no prompt cache, --labels-first": ([], True),
}


def labels_first(labeller):
    """A predict-like call with the generated label list and format before the instruction (measurement only)."""

    def call(policy, schema, text) -> None:
        system = format_spec(schema) + "\n\n" + policy.instruction.strip()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        labeller.complete(messages, json_schema(schema), answer_token_cap(schema, labeller.config.max_tokens))

    return call


def timed(predict, policy, schema, texts) -> list[float]:
    out = []
    for text in texts:
        started = time.monotonic()
        predict(policy, schema, text)
        out.append(time.monotonic() - started)
    return out


def measure(base_url: str, schema, items, reorder: bool = False) -> dict:
    labeller, proposer = clients(base_url, 64)
    predictor = labels_first(labeller) if reorder else Predictor(labeller).predict
    a = default_policy()
    b = a.with_instruction(a.instruction + " When unsure, prefer the most specific label.")
    texts = [item.input for item in items]
    predictor(a, schema, "warm-up")  # load the model pages; not counted
    naive = timed(predictor, a, schema, texts[:16])
    loop = []
    for batch in (texts[16:24], texts[24:32]):
        for policy in (a, b):
            loop += timed(predictor, policy, schema, batch)
        proposer.complete([{"role": "user", "content": "Suggest a better labelling instruction."}], None, 32)
    return {"naive": naive, "loop": loop}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--dataset", default="banking77")
    parser.add_argument("--port", type=int, default=18441)
    parser.add_argument("--only", help="run only the settings whose name contains this text")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "prefix.json")
    args = parser.parse_args(argv)
    folder = Path(args.data) / args.dataset
    gold = load_gold(folder / "test.jsonl", labels_path=folder / "labels.json")
    items = sample(gold.items, 32, 0)
    out = {"dataset": args.dataset, "items": len(items), "load": os.getloadavg(), "settings": {},
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    for name, (extra, reorder) in SETTINGS.items():
        if args.only and args.only not in name:
            continue
        server = start_server(args.port, 1, extra)
        try:
            result = measure(server.base_url, gold.schema, items, reorder)
        finally:
            server.stop()
        out["settings"][name] = result  # seconds of every call: bench/tables.py makes the README's table
        figures = {k: (statistics.median(v), statistics.mean(v)) for k, v in result.items()}
        parts = [f"{k} pattern median {m:.2f} s/call (mean {a:.2f})" for k, (m, a) in figures.items()]
        print(f"{args.dataset} {name}: " + ", ".join(parts), flush=True)
    out["load_after"] = os.getloadavg()
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
