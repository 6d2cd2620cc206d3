"""A reward-scoring project's tasks → JSON Lines ready for RLVR (one line per task) or DPO (preference pairs).

RLVR line (``Format.RLVR``)::

    {"task_id": 7, "prompt": "...", "response": "...", "reward": 1.0, "reward_source": "human",
     "annotation_id": 31, "judge_reward": 0.93, "reward_z": 0.64}

- ``prompt`` and ``response`` are the task data under the config's own ``value="$field"`` names;
- ``reward`` is the grade's stored value as a number (``"1"`` → 1.0; Good/Bad → 1/0);
- a human grade wins (``reward_source: "human"`` with its ``annotation_id``), chosen as training does: cancelled
  annotations are skipped, the ground-truth one wins, then the latest. Tasks without one appear only when
  ``include_judged`` is set, carrying the judge's grade (``reward_source: "judge"``);
- ``judge_reward`` is the soft reward: the judge's probability of the highest grade, from the latest prediction's
  score for its chosen grade: ``p`` if it chose the highest grade, else the remaining mass spread over the other
  grades, ``(1 - p) / (K - 1)`` (exactly ``1 - p`` for Good/Bad). ``null`` when the task has no prediction;
- ``reward_z`` is ``reward`` z-scored within the prompt's group of lines, or over the whole file when the prompt has
  one response (population standard deviation; 0.0 where all rewards are equal), which keeps later RL training on a
  stable scale.

Preference pair (``Format.PREFERENCE``): for each prompt with two or more graded responses, every (higher, lower)
reward pair as ``{"prompt", "chosen", "rejected"}``, ready for DPO.

Pure functions over task dicts (an SDK listing or a Label Studio JSON export): no LLM, no Redis.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from enum import StrEnum

from optimizer.labelstudio.client import LabelStudioClient
from optimizer.labelstudio.judge import JudgeShape, judge_shape
from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.learning.gold import choose_annotation


class Format(StrEnum):
    RLVR = "rlvr"
    PREFERENCE = "preference"


class Source(StrEnum):
    HUMAN = "human"
    JUDGE = "judge"


class ExportError(ValueError):
    """The project cannot be exported in this format; the message says why in a user's words."""


def shape_of(schema: Schema) -> JudgeShape:
    shape = judge_shape(schema)
    if shape is None:
        raise ExportError(
            "the project's label config is not a reward-scoring config: it needs two Text objects (a prompt and a "
            "response) and one single-choice Choices whose values are numbers or Good/Bad"
        )
    return shape


def _grade(shape: JudgeShape, result: list) -> tuple[str, float | None] | None:
    """The first grade of the judge's control in a result, with its item's score (if any)."""
    for item in result or []:
        if isinstance(item, Mapping) and item.get("from_name") == shape.control.name:
            for choice in (item.get("value") or {}).get("choices") or []:
                if shape.reward(choice) is not None:
                    score = item.get("score")
                    return choice, float(score) if isinstance(score, int | float) else None
    return None


def _latest(records: Iterable) -> list[Mapping]:
    usable = [r for r in records or () if isinstance(r, Mapping)]
    return sorted(usable, key=lambda r: (str(r.get("created_at") or ""), r.get("id") or 0), reverse=True)


def judge_grade(shape: JudgeShape, task: Mapping) -> tuple[str, float | None] | None:
    """The latest prediction's grade and its confidence."""
    for prediction in _latest(task.get("predictions") or ()):
        found = _grade(shape, prediction.get("result") or [])
        if found is not None:
            grade, score = found
            return grade, score if score is not None else _number(prediction.get("score"))
    return None


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def best_probability(shape: JudgeShape, grade: str, p: float | None) -> float | None:
    """The judge's probability of the highest grade, from its probability ``p`` of the grade it chose."""
    if p is None:
        return None
    p = min(1.0, max(0.0, p))
    if grade == shape.best:
        return round(p, 6)
    return round((1.0 - p) / max(1, len(shape.grades) - 1), 6)


def _text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def rlvr_lines(schema: Schema, tasks: Iterable[Mapping], include_judged: bool = False) -> list[dict]:
    shape = shape_of(schema)
    lines = []
    for task in tasks:
        data = task.get("data") if isinstance(task, Mapping) else None
        if not isinstance(data, Mapping):
            continue
        judged = judge_grade(shape, task)
        annotation = choose_annotation(schema, task.get("annotations") or ())
        human = _grade(shape, annotation.get("result") or []) if annotation is not None else None
        if human is not None:
            grade, source = human[0], Source.HUMAN
        elif include_judged and judged is not None:
            grade, source = judged[0], Source.JUDGE
        else:
            continue
        line = {
            "task_id": task.get("id"),
            "prompt": _text(data.get(shape.prompt.key)),
            "response": _text(data.get(shape.response.key)),
            "reward": shape.reward(grade),
            "reward_source": source.value,
        }
        if source is Source.HUMAN:
            line["annotation_id"] = annotation.get("id")
        line["judge_reward"] = best_probability(shape, *judged) if judged else None
        lines.append(line)
    _add_z(lines)
    return lines


def _z(values: list[float], of: list[float] | None = None) -> list[float]:
    """``values`` z-scored against the mean and population deviation of ``of`` (default: themselves)."""
    of = values if of is None else of
    mean = sum(of) / len(of)
    std = math.sqrt(sum((v - mean) ** 2 for v in of) / len(of))
    return [round((v - mean) / std, 6) if std > 1e-12 else 0.0 for v in values]


def _add_z(lines: list[dict]) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        groups[line["prompt"]].append(line)
    everything = [line["reward"] for line in lines]
    for group in groups.values():
        rewards = [line["reward"] for line in group]
        # A lone response has no group to compare with: it is placed against the whole file instead.
        for line, z in zip(group, _z(rewards, everything if len(group) == 1 else None), strict=True):
            line["reward_z"] = z


def preference_pairs(lines: Iterable[Mapping]) -> list[dict]:
    """Every (higher, lower) reward pair among each prompt's graded responses."""
    groups: dict[str, list[Mapping]] = defaultdict(list)
    for line in lines:
        groups[line["prompt"]].append(line)
    pairs = []
    for prompt, group in groups.items():
        ranked = sorted(group, key=lambda line: (-line["reward"], str(line["task_id"])))
        for i, better in enumerate(ranked):
            for worse in ranked[i + 1 :]:
                if better["reward"] > worse["reward"] and better["response"] != worse["response"]:
                    pairs.append({"prompt": prompt, "chosen": better["response"], "rejected": worse["response"]})
    return pairs


def export_lines(schema: Schema, tasks: Iterable[Mapping], fmt: Format, include_judged: bool = False) -> list[dict]:
    lines = rlvr_lines(schema, tasks, include_judged)
    return preference_pairs(lines) if fmt is Format.PREFERENCE else lines


def to_jsonl(lines: Iterable[Mapping]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def export_project(ls: LabelStudioClient, project: int, fmt: Format, include_judged: bool = False) -> list[dict]:
    """Read the project's config and every task (with annotations and predictions) from Label Studio, and export.

    Raises :class:`ExportError` for a config that is not reward-scoring, ``LabelStudioError`` when Label Studio
    cannot be read.
    """
    try:
        schema = parse_label_config(ls.label_config(project))
    except LabelConfigError as exc:
        raise ExportError(f"the project's label config cannot be used: {exc}") from None
    shape_of(schema)  # refuse before listing every task of a project that cannot be exported
    return export_lines(schema, ls.tasks(project), fmt, include_judged)
