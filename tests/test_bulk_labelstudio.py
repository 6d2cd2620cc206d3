"""A project too big for one /predict, against a real Label Studio 1.23.2, gunicorn, Redis and an RQ worker.

30 tasks, an LLM that takes 0.3 s per call with two calls at a time, a 2 s /predict deadline: Retrieve Predictions
can answer only a few tasks itself. The rest come back as "no prediction" (stored as nothing) and are handed to
the bulk job, which posts them through label-studio-sdk. What Label Studio holds at the end is the test.
"""

from __future__ import annotations

import re
import secrets
import sys

import httpx
import pytest

from optimizer.runtime.versions import policy_version
from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM, keyword_responder
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
        # The deadline cut the batch: /predict answered some tasks itself and handed the rest (counted by reason in
        # /metrics) to the bulk run, which may have posted them all by now.
        metrics = httpx.get(backend.url + "/metrics", timeout=10).text
        cut = re.search(r'lsml_prediction_failures_total\{project="[^"]+",reason="deadline"\} (\d+)', metrics)
        assert cut is not None and 0 < int(cut[1]) < 30, metrics[-2000:]

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


def test_three_hundred_tasks_in_one_retrieve_then_a_new_version_for_the_whole_project(labelstudio, start_backend):
    """One Retrieve Predictions of 320 tasks with a real RQ worker: /predict answers the first PREDICT_SYNC_MAX and
    hands the rest to a bulk run. Every task ends with exactly one non-empty prediction of the version, read back
    through the SDK. Then the Data Manager filters the plan pages with are checked on the real server: a run for
    the whole project finds nothing left, and after a new version it posts every task once, while its own chunks
    take tasks out of the listing it pages through."""
    from optimizer.runtime.services import Services
    from optimizer.serving.policy import Policy
    from optimizer.settings import Settings

    n = 320
    with FakeLLM(keyword_responder) as llm:
        env = {"LABEL_STUDIO_URL": labelstudio.url, "LABEL_STUDIO_API_KEY": labelstudio.token, "BULK_CHUNK": "32",
               "RQ_QUEUE": "e2e-" + secrets.token_hex(4), "ALLOW_ANONYMOUS_WRITES": "1"}  # fmt: skip
        backend = start_backend(llm.base_url, env=env)
        backend.spawn([sys.executable, "-m", "optimizer", "worker"], name="worker")
        tasks = [{"text": f"Ticket {i}: a question about {WORDS[i % 3]}."} for i in range(n)]
        project, task_ids = labelstudio.create_project(THREE_CONTROLS_CONFIG, tasks)
        labelstudio.connect_backend(project.id, backend.url, interactive=False)

        def held() -> dict[int, list[dict]]:
            listed = labelstudio.client.tasks.list(project=project.id, fields="all", page_size=100)
            return {t.id: [p.model_dump(mode="json") for p in t.predictions or []] for t in listed}

        def every_task_once(version: str) -> None:
            """Exactly one non-empty, right prediction of policy ``version`` per task (whatever its config and
            model parts: the project's stay the same here)."""
            by_task = held()
            assert set(by_task) == set(task_ids)
            for i, task_id in enumerate(task_ids):
                ours = [p for p in by_task[task_id] if policy_version(p["model_version"]) == version]
                assert len(ours) == 1, (task_id, by_task[task_id])  # none duplicated
                chosen = {r["from_name"]: r["value"]["choices"] for r in ours[0]["result"]}
                assert WORDS[i % 3] in chosen["topics"], chosen  # none empty, and the right answer

        labelstudio.retrieve_predictions(project.id)
        wait_for(lambda: all(held().values()), 240, 2.0, what=f"every task to be posted; logs:\n{backend.log_tail()}")
        services = Services(Settings(_env_file=None, redis_url=backend.env["REDIS_URL"],
                                     redis_namespace=backend.env["REDIS_NAMESPACE"]))  # fmt: skip
        uid = services.projects.resolve(str(project.id))
        version = services.store.current(uid).version
        every_task_once(version)
        assert len(backend.requests("/predict")) == 1  # one Retrieve Predictions did it all

        session = httpx.Client(base_url=backend.url, timeout=30)

        def run_for_the_project() -> dict:
            answer = session.post(f"/projects/{project.id}/predict", json={})
            assert answer.status_code == 202, answer.text
            job = answer.json()["job"]
            return wait_for(lambda: (v := session.get(f"/jobs/{job}").json())["state"] in ("finished", "failed")
                            and v, 240, 1.0, what="the run to end")  # fmt: skip

        nothing_left = run_for_the_project()
        assert nothing_left["status"] == "finished" and nothing_left["progress"]["tasks"] == {"skipped": n}
        live = services.store.current(uid)
        newer = Policy(live.instruction + "\nAnswer with the topics the ticket names.")
        assert services.store.promote(uid, newer, live.version, source="test").ok
        renewed = run_for_the_project()
        assert renewed["status"] == "finished" and renewed["progress"]["tasks"] == {"posted": n}, renewed
        every_task_once(newer.version)
        every_task_once(version)  # the old version's predictions are left as they were
