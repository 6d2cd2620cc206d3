"""A project too big for one /predict, against a real Label Studio 1.23.2, gunicorn, Redis and an RQ worker.

30 tasks, an LLM that takes 0.3 s per call with two calls at a time, a 2 s /predict deadline: Retrieve Predictions
can answer only a few tasks itself. The rest come back as "no prediction" (stored as nothing) and are handed to
the bulk job, which posts them through label-studio-sdk. What Label Studio holds at the end is the test.
"""

from __future__ import annotations

import secrets
import sys

import pytest

from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM
from testkit.processes import wait_for

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

WORDS = ["billing", "shipping", "returns"]


def test_thirty_tasks_past_the_deadline_each_end_with_one_valid_current_prediction(labelstudio, start_backend):
    schema_labels = {"topics": set(WORDS), "sentiment": {"positive", "neutral", "negative"}, "urgency": {"low", "high"}}
    with FakeLLM(delay=0.3) as llm:
        env = {"LABEL_STUDIO_URL": labelstudio.url, "LABEL_STUDIO_API_KEY": labelstudio.token,
               "RQ_QUEUE": "e2e-" + secrets.token_hex(4), "PREDICT_DEADLINE": "2", "LLM_CONCURRENCY": "2",
               "BULK_CHUNK": "8"}  # fmt: skip
        backend = start_backend(llm.base_url, env=env)
        backend.spawn([sys.executable, "-m", "optimizer", "worker"], name="worker")
        tasks = [{"text": f"Ticket {i}: a question about {WORDS[i % 3]}."} for i in range(30)]
        project, task_ids = labelstudio.create_project(THREE_CONTROLS_CONFIG, tasks)
        ml = labelstudio.connect_backend(project.id, backend.url, interactive=False)

        labelstudio.retrieve_predictions(project.id)
        version = labelstudio.ml_backend(ml.id)["model_version"]
        answered_at_once = sum(1 for t in task_ids if labelstudio.predictions(t))
        assert 0 < answered_at_once < 30  # the deadline cut the batch, and nothing empty was stored for the rest

        def complete():
            return all(labelstudio.predictions(t) for t in task_ids)

        wait_for(complete, 120, 1.0, what=f"the bulk job to post the rest; logs:\n{backend.log_tail()}")
        for task_id, task in zip(task_ids, tasks, strict=True):
            (prediction,) = labelstudio.predictions(task_id)  # exactly one: none duplicated
            assert prediction["model_version"] == version and prediction["result"]  # none empty
            chosen = {i["from_name"]: i["value"]["choices"] for i in prediction["result"]}
            assert all(set(labels) <= schema_labels[name] for name, labels in chosen.items())
            assert WORDS[task_ids.index(task_id) % 3] in chosen["topics"], (task, chosen)
        # Retrieve again: Label Studio has a current prediction everywhere and asks for nothing.
        before = len(backend.requests("/predict"))
        labelstudio.retrieve_predictions(project.id)
        assert len(backend.requests("/predict")) == before
