"""Label Studio tasks → model inputs, and predictions → Label Studio's prediction format.

``/predict`` and the re-predict job both go task → ``task_texts`` → ``Predictor.predict_many`` → ``ls_predictions``,
so a re-predicted task gets exactly the result ``/predict`` would have returned for the same policy: same rendering,
same predictor, same strict mapping back to the config's labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from optimizer.labelstudio.labelconfig import Schema
from optimizer.labelstudio.render import MissingInput, render_input
from optimizer.labelstudio.results import to_results
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import Prediction


def task_texts(schema: Schema, tasks: Sequence[dict]) -> list[str | None]:
    """Each task's model input; ``None`` for a task that lacks the data the config reads (it fails alone)."""
    texts: list[str | None] = []
    for task in tasks:
        try:
            texts.append(render_input(schema, task.get("data") or {}))
        except MissingInput:
            texts.append(None)
    return texts


def ls_predictions(
    schema: Schema, policy: Policy, predictions: Sequence[Prediction], tasks: Sequence[dict]
) -> list[dict]:
    """One ``{"result", "score", "model_version"}`` per prediction, in order (an empty result for a failed one).

    ``tasks`` are the tasks predicted, in the same order: span offsets are computed against each task's own text.
    """
    return [
        {
            "result": to_results(
                schema,
                p.choices,
                p.texts,
                p.control_scores,
                prompt=policy.instruction,
                values=p.values,
                data=task.get("data") or {},
            ),
            "score": p.score,
            "model_version": policy.version,
        }
        for p, task in zip(predictions, tasks, strict=True)
    ]
