"""A retraining stack for tests: the app on a real HTTP server, a real RQ worker process, a scripted LLM and LS.

The scripted LLM makes the optimiser's job observable: the labeller answers correctly (by keyword) only when its
system prompt contains ``MAGIC_WORD``, and the proposer (any request without a JSON answer format) proposes an
instruction that contains it. So a candidate from the proposer is truly better on every split, and a run that
promotes it changes what ``/predict`` returns.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import requests
from werkzeug.serving import make_server

from tests.fakellm import Reply, keyword_answer, labels_from_system, system_text
from tests.fakels import FakeLabelStudio
from tests.lspayloads import uid, webhook
from tests.processes import Proc, start_worker, wait_for

MAGIC_WORD = "MAGIC-RULE"
PROJECT_ID = 1
AUTH = ("admin", "s3cret-pass")
INTENTS = ["Greeting", "Billing", "Complaint", "Cancellation", "Order_Status", "Technical_Support"]


def magic_responder(body: dict):
    """Labeller: right only with the magic instruction. Proposer: always proposes the magic instruction."""
    if not labels_from_system(body):
        return Reply(f"Choose the intent the customer names. {MAGIC_WORD}: match the label words exactly.")
    if MAGIC_WORD in system_text(body):
        return Reply(json.dumps(keyword_answer(body)))
    return Reply(json.dumps({name: ["Other"] for name in labels_from_system(body)}))


def gold_tasks(n: int = 12, unlabelled: int = 3) -> list[dict]:
    tasks = []
    for i in range(n + unlabelled):
        label = INTENTS[i % len(INTENTS)]
        task = {"id": i + 1, "data": {"dialogue": [{"author": "Customer", "text": f"{label.replace('_', ' ')} #{i}"}]}}
        if i < n:
            result = [{"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": [label]}}]
            task["annotations"] = [
                {
                    "id": 100 + i,
                    "result": result,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "completed_by": 1,
                    "updated_at": "2026-11-21T22:40:00Z",
                }
            ]
        tasks.append(task)
    return tasks


@dataclass
class Stack:
    settings: object
    services: object
    url: str
    session: requests.Session
    ls: FakeLabelStudio
    log_dir: object
    label_config: str
    workers: list[Proc] = field(default_factory=list)

    @property
    def project(self) -> str:
        return uid(PROJECT_ID)

    def start_worker(self, name: str = "worker") -> Proc:
        proc = start_worker(self.settings, self.log_dir, name=f"{name}-{len(self.workers)}")
        self.workers.append(proc)
        return proc

    def webhook(self, action: str = "START_TRAINING") -> dict:
        payload = webhook(action, PROJECT_ID, self.label_config)
        answer = self.session.post(self.url + "/webhook", json=payload, timeout=10)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def setup_version(self) -> str:
        answer = self.session.post(
            self.url + "/setup", json={"project": self.project, "schema": self.label_config}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["model_version"]

    def job(self, job_id: str) -> dict:
        answer = self.session.get(f"{self.url}/jobs/{job_id}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_job(self, job_id: str, timeout: float = 60, states=("finished", "failed")) -> dict:
        def done():
            view = self.job(job_id)
            return view if view["status"] in states else None

        return wait_for(done, timeout, 0.1, what=f"job {job_id} to reach {states}; logs:\n{self.logs()}")

    def idle(self) -> bool:
        state = self.services.coalescer.status(self.project)
        return not (state["running"] or state["queued"] or state["followup"])

    def logs(self) -> str:
        return "\n".join(f"--- {w.log.name}\n{w.output()[-4000:]}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
