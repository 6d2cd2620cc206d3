"""Smoke test: the optimise CLI end to end against the real embedded model (SmolLM2-135M behind llama.cpp).

The model is too small to improve anything reliably; the test checks the contract: the run finishes within its
budget, writes its three files, scores test for both policies, takes at least one step that proposes candidates,
and every candidate has a status and a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from testkit.constants import ROOT

pytestmark = [pytest.mark.llm, pytest.mark.slow]

TEXTS = {
    "positive": ["I love this, thank you so much", "Great service, very happy", "This is wonderful news"],
    "negative": ["This is terrible and broken", "I hate waiting, awful support", "Worst purchase ever made"],
    "neutral": ["The parcel arrives on Tuesday", "My account number is on the form", "I read the manual today"],
}


def test_optimize_cli_with_the_embedded_model(embedded_llm, tmp_path):
    rows = []
    for label, texts in TEXTS.items():
        for i in range(10):
            rows.append({"text": f"{texts[i % 3]} (note {i})", "labels": [label]})
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = {
        **os.environ,
        "LLM_BASE_URL": embedded_llm.base_url,
        "LLM_MODEL": "smollm2-135m",
        "LLM_PROVIDER": "llamacpp",
        "LLM_TIMEOUT": "180",
        "LLM_MAX_TOKENS": "48",
        "OPTIMIZER_BASE_URL": "",
    }
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "optimizer", "optimize", "--gold", str(gold), "--budget", "24", "--minibatch", "4",
         "--candidates", "2", "--seed", "1", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "calls" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["calls"] <= 24
    assert report["usage"]["labeller"]["completion_tokens"] > 0
    assert report["split"] == {"train": 18, "val": 6, "test": 6}
    assert report["test"]["initial"]["n"] == 6 and report["test"]["best"]["n"] == 6
    # The loop must have run: at least one step that proposed candidates, each with a status and a reason.
    steps = report["run"]["steps"]
    candidates = [candidate for step in steps for candidate in step.get("candidates", [])]
    assert steps and candidates, report["run"].get("stop")
    for candidate in candidates:
        assert candidate["status"] and candidate.get("reason"), candidate
    assert (out / "optimized_prompt.txt").read_text().strip()
    assert json.loads((out / "policy.json").read_text())["version"] == report["best"]["version"]
