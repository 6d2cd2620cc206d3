"""A retraining stack for tests: the backend under gunicorn, real RQ worker processes, a scripted LLM and LS.

The scripted LLM makes the optimiser's job observable: the labeller answers correctly (by keyword) only when its
system prompt contains ``MAGIC_WORD``, and the proposer (any request without the label format spec) proposes an
instruction that contains it. So a candidate from the proposer is truly better on every split, and a run that
promotes it changes what ``/predict`` returns.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import requests
from pydantic import SecretStr

from testkit.backendprocess import BackendProcess, ManagedProcess
from testkit.fakellm import Reply, keyword_answer, labels_from_system, system_text
from testkit.fakels import FakeLabelStudio
from testkit.lspayloads import uid, webhook
from testkit.processes import descendants, kill_tree, wait_for

MAGIC_WORD = "MAGIC-RULE"
PROJECT_ID = 1
AUTH = ("admin", "s3cret-pass")
INTENTS = ["Greeting", "Billing", "Complaint", "Cancellation", "Order_Status", "Technical_Support"]
# Settings the backend and worker processes must share with the test's in-process Services.
SHARED = (
    "default_prompt", "rq_queue", "train_lease_ttl", "train_min_gold", "optimize_budget", "retrain_every_n",
    "repredict_after_promote", "bulk_chunk", "bulk_claim_ttl", "predict_sync_max", "label_studio_url",
    "label_studio_api_key", "llm_concurrency", "llm_global_concurrency", "bulk_retries", "bulk_retry_backoff",
    "bulk_threads", "rq_bulk_queue", "llm_max_retries",
)  # fmt: skip


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
                {"id": 100 + i, "result": result, "was_cancelled": False, "ground_truth": False,
                 "completed_by": 1, "updated_at": "2026-11-21T22:40:00Z"}
            ]  # fmt: skip
        tasks.append(task)
    return tasks


def shared_env(settings) -> dict[str, str]:
    """The environment that gives another process the same values as ``settings`` for :data:`SHARED`."""
    out = {}
    for name in SHARED:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return out


@dataclass
class Stack:
    settings: object
    services: object
    backend: BackendProcess
    ls: FakeLabelStudio
    label_config: str
    workers: list[ManagedProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.auth = AUTH

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def project(self) -> str:
        return uid(PROJECT_ID)

    def start_worker(self, name: str = "worker", queues: str | None = None) -> ManagedProcess:
        """An RQ worker process (``queues``: ``train``, ``bulk`` or both, as ``--queues`` takes them), named
        ``<name>-<n>`` in RQ too."""
        label = f"{name}-{len(self.workers)}"
        argv = [sys.executable, "-m", "optimizer", "worker", "--name", f"{label}-{self.settings.redis_namespace}"]
        proc = self.backend.spawn(argv + (["--queues", queues] if queues else []), name=label)
        self.workers.append(proc)
        return proc

    def work_horse(self, worker: ManagedProcess) -> int:
        return wait_for(lambda: descendants(worker.pid), 5, what="the work horse running the job")[0]

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

    def wait_job(self, job_id: str, timeout: float = 60, states=("finished", "failed", "cancelled")) -> dict:
        """The job's view once its ``state`` is one of ``states`` (its ``status`` may say more: ``finished with 2
        failed``)."""

        def done():
            view = self.job(job_id)
            return view if view["state"] in states else None

        return wait_for(done, timeout, 0.1, what=f"job {job_id} to reach {states}; logs:\n{self.backend.log_tail()}")

    def idle(self) -> bool:
        state = self.services.coalescer.status(self.project)
        return not (state["running"] or state["queued"] or state["followup"])

    def close(self) -> None:
        """Kill the workers and their work horses (in their own process groups), then the rest of the backend."""
        for worker in self.workers:
            kill_tree(worker.pid)
        self.backend.cleanup()
