"""Label Studio tasks → model inputs, and predictions → Label Studio's prediction format.

``/predict`` and the re-predict job both go task → ``task_texts`` → ``Predictor.predict_many`` → ``ls_predictions``,
so a re-predicted task gets exactly the result ``/predict`` would have returned for the same policy: same rendering,
same predictor, same strict mapping back to the config's labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def ls_prediction(schema: Schema, policy: Policy, prediction: Prediction, data: Mapping | None = None) -> dict | None:
    """``{"result", "score", "model_version"}`` for an answered task; None for one without an answer.

    None, never an empty result: Label Studio stores an empty result under the current version as a real
    prediction and then never asks for that task again (docs/tags.md, "Tasks without an answer"). ``data`` is the
    task's data: span offsets are computed against its own text.
    """
    if prediction.error is not None:
        return None
    result = to_results(
        schema,
        prediction.choices,
        prediction.texts,
        prediction.control_scores,
        policy.instruction,
        values=prediction.values,
        data=data,
    )
    if not result:
        return None
    return {"result": result, "score": prediction.score, "model_version": policy.version}


def ls_predictions(
    schema: Schema, policy: Policy, predictions: Sequence[Prediction], tasks: Sequence[dict]
) -> list[dict | None]:
    """One :func:`ls_prediction` per prediction and its task, in order."""
    return [ls_prediction(schema, policy, p, t.get("data") or {}) for p, t in zip(predictions, tasks, strict=True)]
