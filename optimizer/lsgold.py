"""Label Studio tasks (API or JSON export: the same shape) → gold items for the optimiser.

One gold item per task, rendered with the same ``render_input`` ``/predict`` uses, so the loop scores exactly the
text the live model sees. Which annotation becomes the gold answer is decided deterministically:

1. cancelled (skipped) annotations and annotations with no usable answer for the config are ignored;
2. if any remaining annotation is marked ground truth, only those count;
3. the answer given by the most annotators wins (answers compare exactly, per control);
4. a tie goes to the answer of the most recently updated annotation (then the highest annotation id).

The same task order and choice come out for the same data, whatever order the API returned them in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .gold import GoldItem
from .labelconfig import Schema
from .lsformat import answer_from_result, prompt_from_result
from .render import MissingInput, render_input


@dataclass
class GoldStats:
    tasks: int = 0
    used: int = 0
    cancelled: int = 0
    empty: int = 0
    missing_input: int = 0
    disagreements: int = 0
    prompts: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {
            "tasks": self.tasks,
            "used": self.used,
            "cancelled_annotations": self.cancelled,
            "tasks_without_usable_answer": self.empty,
            "tasks_missing_input": self.missing_input,
            "tasks_with_disagreement": self.disagreements,
        }


def _answer_key(answer: dict) -> str:
    canonical = {k: sorted(v) if isinstance(v, list) else v for k, v in answer.items()}
    return json.dumps(canonical, sort_keys=True, ensure_ascii=False)


def _recency(annotation: dict) -> tuple[str, int]:
    stamp = annotation.get("updated_at") or annotation.get("created_at") or ""
    ident = annotation.get("id")
    return (str(stamp), ident if isinstance(ident, int) else -1)


def choose_annotation(schema: Schema, annotations: Iterable[dict]) -> tuple[dict | None, dict, int]:
    """(chosen annotation, its answer, number of distinct answers among the counted ones)."""
    usable = []
    for annotation in annotations:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        answer = answer_from_result(schema, annotation.get("result") or [])
        if answer:
            usable.append((annotation, answer))
    if not usable:
        return None, {}, 0
    truth = [(a, ans) for a, ans in usable if a.get("ground_truth")]
    counted = truth or usable
    votes = Counter(_answer_key(ans) for _, ans in counted)
    best = max(
        counted,
        key=lambda pair: (votes[_answer_key(pair[1])], _recency(pair[0])),
    )
    return best[0], best[1], len(votes)


def gold_from_tasks(schema: Schema, tasks: Iterable[dict]) -> tuple[list[GoldItem], GoldStats]:
    """Gold items in task-id order, plus counts of what was skipped and why (for the job's report)."""
    stats = GoldStats()
    items: list[GoldItem] = []
    for task in sorted(tasks, key=lambda t: str(t.get("id", "")).zfill(12)):
        stats.tasks += 1
        annotations = task.get("annotations") or []
        stats.cancelled += sum(1 for a in annotations if isinstance(a, dict) and a.get("was_cancelled"))
        chosen, answer, distinct = choose_annotation(schema, annotations)
        if chosen is None:
            stats.empty += 1
            continue
        try:
            text = render_input(schema, task.get("data") or {})
        except MissingInput:
            stats.missing_input += 1
            continue
        if distinct > 1:
            stats.disagreements += 1
        prompt = prompt_from_result(schema, chosen.get("result") or [])
        if prompt:
            stats.prompts[prompt] += 1
        items.append(GoldItem(id=str(task.get("id")), input=text, answer=answer, prompt=prompt))
        stats.used += 1
    return items, stats


def typed_prompt(stats: GoldStats) -> str | None:
    """The prompt annotators typed most often in the prompt TextArea (seed 001's starting prompt), if any."""
    if not stats.prompts:
        return None
    return max(stats.prompts.items(), key=lambda kv: (kv[1], kv[0]))[0]
