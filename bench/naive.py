"""The seed's naive optimisation loop, reimplemented as a benchmark baseline (never used by the product).

As issue 3 describes it: for 3 epochs, label every gold item with the current prompt, compute F1 on those same
items, show the optimiser LLM the prompt and the mistakes, and accept whatever rewrite comes back. There is no
held-out split, no gate and no check on the rewrite; the score it reports is on the items it optimised on. The
prompt after the last rewrite is the result (the seed never scored it).

It labels through the product's :class:`~optimizer.serving.predictor.Predictor`, so the comparison with our loop is
about the optimisation strategy, not about prompting or parsing.
"""

from __future__ import annotations

from collections.abc import Sequence

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.evaluation import score_prediction
from optimizer.learning.feedback import answer_text
from optimizer.learning.gold import GoldItem
from optimizer.serving.llm import LLMClient
from optimizer.serving.llm_errors import LLMError
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import Predictor

EPOCHS = 3
SHOWN_MISTAKES = 5


def rewrite_request(prompt: str, mistakes: list[tuple[GoldItem, dict]], f1: float) -> list[dict]:
    lines = [
        "The prompt below is used to label texts. Its F1 score is " + f"{f1:.3f}" + ".",
        "",
        "Prompt:",
        prompt,
        "",
        "Examples it got wrong:",
    ]
    for item, got in mistakes:
        lines.append("Text: " + item.input[:300].replace("\n", " "))
        lines.append("Correct: " + answer_text(item.answer) + " | Predicted: " + answer_text(got))
    lines += ["", "Write an improved prompt. Reply with the prompt only."]
    return [{"role": "user", "content": "\n".join(lines)}]


def naive_loop(
    initial: Policy,
    schema: Schema,
    gold: Sequence[GoldItem],
    labeller: LLMClient,
    proposer: LLMClient,
    *,
    max_tokens: int = 256,
) -> tuple[Policy, dict]:
    """Returns the final policy and a report with each epoch's self-reported F1 (on the gold it trains on)."""
    predictor = Predictor(labeller)
    policy = initial
    epochs = []
    for epoch in range(1, EPOCHS + 1):
        predictions = predictor.predict_many(policy, schema, [item.input for item in gold])
        scores = [score_prediction(schema, p, item) for p, item in zip(predictions, gold, strict=True)]
        f1 = sum(s.reward for s in scores) / len(scores)
        mistakes = [(item, p.answer) for item, p, s in zip(gold, predictions, scores, strict=True) if s.reward < 1.0][
            :SHOWN_MISTAKES
        ]
        try:
            rewrite = proposer.complete(rewrite_request(policy.instruction, mistakes, f1), None, max_tokens).text
        except LLMError as exc:
            rewrite, error = "", str(exc)
        else:
            error = None
        epochs.append({"epoch": epoch, "gold_f1": round(f1, 6), "rewrite_chars": len(rewrite), "error": error})
        if rewrite.strip():
            policy = Policy(rewrite.strip())  # accepted unconditionally: the seed's behaviour
    return policy, {"epochs": epochs, "final_instruction": policy.instruction}
