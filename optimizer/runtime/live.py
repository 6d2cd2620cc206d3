"""Live quality of the served policy: annotations scored, as they arrive, against what the backend answered.

How an annotation finds its prediction: Label Studio's annotation webhook carries the annotation and the task's data
but not the task's predictions. Rather than read them back from Label Studio per annotation (an API call each, in
an RQ job queued behind training runs, and only when ``LABEL_STUDIO_URL`` is set), the backend remembers what it
answered per task (:mod:`optimizer.state.served`): ``/predict`` and bulk chunks record the ``model_version`` and the
answer they gave Label Studio, parsed back from the very ``result`` sent, the way annotations are parsed
(``answer_from_result``). The webhook then scores in a few milliseconds, inside Label Studio's 1 s timeout: one read
of the task's answer, the control's verifier, one Lua call. An answer Label Studio did not store (an interactive
preview) is never recorded; one it stored and later replaced by a newer version's is replaced here too.

The counts are per project, per served version and per label (:mod:`optimizer.learning.live_quality`), and each
annotation counts once, as it stands now: an update replaces its contribution, a delete or a skip removes it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Sequence
from enum import StrEnum

import redis

from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.labelstudio.results import answer_from_result
from optimizer.learning.live_quality import VersionFigures, contribution, figures, live_gate
from optimizer.project_settings import ProfileGone
from optimizer.runtime.services import Services

log = logging.getLogger("optimizer.runtime.live")

SCORED_EVENTS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})
DELETED = "ANNOTATIONS_DELETED"
VERSIONS_SHOWN = 20  # the newest versions a report and /metrics show


class Unscored(StrEnum):
    """Why an annotation event added nothing to the live figures (counted per project)."""

    NO_PREDICTION = "no_prediction"  # the backend has no answer recorded for the task (none, expired, interactive)
    CANCELLED = "cancelled"  # a skipped task
    NOTHING_TO_JUDGE = "nothing_to_judge"  # the annotation fills no control the backend predicts
    NO_CONFIG = "no_config"  # the project's label config is unknown or unusable


class LiveQuality:
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- recording what was served ----------------------------------------------------------------------------------
    def remember(self, project: str, schema: Schema, tasks: Sequence[dict], answers: Sequence[dict | None]) -> int:
        """Record the answers Label Studio will store (each ``{"result", "model_version", ...}``, None: none)."""
        rows = []
        for task, answer in zip(tasks, answers, strict=True):
            if answer and isinstance(task.get("id"), int):
                given = answer_from_result(schema, answer.get("result") or [], task.get("data") or {})
                if given:
                    rows.append((task["id"], str(answer["model_version"]), given))
        return self.services.served.remember(project, rows) if rows else 0

    # -- scoring annotations ----------------------------------------------------------------------------------------
    def observe(self, project: str, action: str, payload: dict) -> str | None:
        """Score (or un-score) what a webhook says happened to annotations; the outcome, for the event log."""
        if action == DELETED:
            ids = [a.get("id") for a in payload.get("annotations") or () if isinstance(a, dict)]
            removed = self.services.quality.forget(project, [i for i in ids if isinstance(i, int)])
            return f"removed {removed}"
        if action not in SCORED_EVENTS:
            return None
        annotation = payload.get("annotation")
        task = payload.get("task") if isinstance(payload.get("task"), dict) else {}
        if not isinstance(annotation, dict) or not isinstance(annotation.get("id"), int):
            return None
        task_id = annotation.get("task") if isinstance(annotation.get("task"), int) else task.get("id")
        outcome = self._score(project, annotation, task_id, task, payload.get("project"))
        if isinstance(outcome, Unscored):
            self.services.quality.forget(project, [annotation["id"]])  # what it counted before no longer stands
            self.services.quality.count_unscored(project, outcome.value)
            return outcome.value
        return outcome

    def _score(self, project: str, annotation: dict, task_id, task: dict, info) -> Unscored | str:
        if annotation.get("was_cancelled"):
            return Unscored.CANCELLED
        served = self.services.served.get(project, task_id) if isinstance(task_id, int) else None
        if served is None:
            return Unscored.NO_PREDICTION
        schema = self._schema(project, info)
        if schema is None:
            return Unscored.NO_CONFIG
        gold = answer_from_result(schema, annotation.get("result") or [], task.get("data") or {})
        counts = contribution(schema, served.answer, gold, self._verifiers(project)) if gold else None
        if counts is None:
            return Unscored.NOTHING_TO_JUDGE
        first_n = self.services.settings.live_gate_annotations
        applied = self.services.quality.score(project, annotation["id"], served.version, counts, first_n)
        if applied.filled:
            self._judge(project, served.version)
        return "scored"

    def _schema(self, project: str, info) -> Schema | None:
        config = info.get("label_config") if isinstance(info, dict) else None
        if not isinstance(config, str):
            config = self.services.projects.label_config(project)
        if not config:
            return None
        try:
            return parse_label_config(config)
        except LabelConfigError:
            return None

    def _verifiers(self, project: str):
        try:
            return self.services.project_settings(project).verifiers() or None
        except ProfileGone:
            return None

    def _judge(self, project: str, version: str) -> None:
        """The version's first-N window just filled: judge it against its parent, once, and say so in the log."""
        report = self.versions(project)
        gate = next((f.gate for f in report if f.version == version), None)
        if gate is None:
            return
        extra = {"project": project, "policy_version": version, "parent": gate.parent}
        if gate.flagged:
            log.warning("project %s: version %s may be worse than its parent %s: %s; rolling back is your call",
                        project, version, gate.parent, gate.reason, extra=extra)  # fmt: skip
        else:
            log.info("project %s: version %s against its parent %s: %s", project, version, gate.parent, gate.reason,
                     extra=extra)  # fmt: skip

    # -- reading ----------------------------------------------------------------------------------------------------
    def versions(self, project: str) -> list[VersionFigures]:
        """Every recent version's figures, in the order they first answered, each judged against the one before."""
        order = self.services.served.versions(project)[-VERSIONS_SHOWN:]
        counts = self.services.quality.counts(project, [v for v, _ in order])
        schema = self._schema(project, None)
        out = [figures(version, counts[version], schema, first) for version, first in order]
        first_n = self.services.settings.live_gate_annotations
        for parent, child in itertools.pairwise(out):
            child.gate = live_gate(child.version, child.window, parent.version, parent.overall, first_n)
        return out

    def report(self, project: str) -> dict:
        """What ``GET /projects/<p>/quality`` answers and the dashboard shows: newest version first."""
        versions = self.versions(project)
        last = None
        with contextlib.suppress(redis.RedisError):
            last = self.services.served.last_answered(project)
        return {
            "project": project,
            "first_n": self.services.settings.live_gate_annotations,
            "last_answered": last,
            "versions": [v.to_dict() for v in reversed(versions)],
            "flagged": [v.version for v in versions if v.gate is not None and v.gate.flagged],
            "unscored": self.services.quality.unscored(project),
        }
