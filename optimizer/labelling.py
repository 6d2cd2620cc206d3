"""Label Studio tasks → Label Studio predictions with one policy: the path ``/predict`` and the re-predict job share.

Keeping it in one function means a re-predicted task gets exactly the result ``/predict`` would have returned
for the same policy: same rendering, same predictor, same strict mapping back to the config's labels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .labelconfig import Schema
from .lsformat import to_results
from .policy import Policy
from .predictor import Predictor
from .render import MissingInput, render_input


def predict_tasks(
    predictor: Predictor, policy: Policy, schema: Schema, tasks: Sequence[dict], deadline_s: float
) -> list[dict]:
    """One ``{"result", "score", "model_version"}`` per task, in order; a task that cannot be read gets none."""
    texts: list[str | None] = []
    for task in tasks:
        try:
            texts.append(render_input(schema, task.get("data") or {}))
        except MissingInput:
            texts.append(None)
    deadline = time.monotonic() + deadline_s
    predictions = predictor.predict_many(policy, schema, texts, deadline=deadline)
    return [
        {
            "result": to_results(schema, p.choices, p.texts, p.control_scores, prompt=policy.instruction),
            "score": p.score,
            "model_version": policy.version,
        }
        for p in predictions
    ]
