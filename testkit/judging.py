"""A scripted LLM judge for reward-scoring tests, and the BANKING77-derived graded rows it is tested on.

The labeller grades like an always-"Good" judge under any instruction without ``JUDGE_RULE``, which is what
balanced accuracy must not reward (0.5, kappa 0); with the rule in its system prompt it grades every response
right, by looking the (prompt, response) pair up in the graded set. The proposer (a request without the label
format spec) always proposes an instruction carrying the rule. Logprobs vary by item, so scores are not constant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from testkit.fakellm import Reply, labels_from_system, last_user, system_text

GRADED = Path(__file__).resolve().parent / "data" / "graded_banking77.jsonl"
JUDGE_RULE = "INTENT-RULE"


def graded_rows(path: Path = GRADED) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rendered(row: dict) -> str:
    """The model input ``render_input`` makes for REWARD_CONFIG (objects ``input`` and ``output``)."""
    return f"[input]\n{row['prompt']}\n\n[output]\n{row['response']}"


class ScriptedJudge:
    def __init__(self, rows: Sequence[dict]):
        self.truth = {rendered(r): r["reward"] for r in rows}

    def __call__(self, body: dict) -> Reply:
        controls = labels_from_system(body)
        if not controls:
            return Reply(f"Grade the response against the prompt. {JUDGE_RULE}: a response naming another intent is 0.")
        text = last_user(body)
        wise = JUDGE_RULE in system_text(body)
        grade = self.truth.get(text, "1") if wise else "1"
        spread = int(hashlib.sha256(text.encode()).hexdigest()[:4], 16) / 0xFFFF
        return Reply(json.dumps({name: grade for name in controls}), logprob=-(0.02 + 0.3 * spread))
