"""Hot-swap across 4 real gunicorn workers: after a promotion, every worker answers with the new version."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from optimizer.serving.policy import Policy
from tests.support.constants import SUPPORT_CONFIG
from tests.support.lspayloads import uid

pytestmark = pytest.mark.slow

PROJECT = uid(11)
AUTH = ("admin", "s3cret-pass")
TASK = {"id": 1, "data": {"dialogue": [{"author": "Customer", "text": "Billing question about my invoice"}]}}


@pytest.fixture
def web(make_settings, namespace, start_backend, fake_llm):
    settings = make_settings(rq_queue=namespace)
    backend = start_backend(
        fake_llm.base_url,
        namespace=namespace,
        basic_auth=AUTH,
        workers=4,
        app="tests.support.pidapp:app",
        env={"DEFAULT_PROMPT": settings.default_prompt},
    )
    return settings, backend.url


def call(url: str, route: str) -> tuple[str, str, list[str]]:
    """(worker pid, version, per-result versions) from a fresh connection, so requests spread over workers."""
    if route == "setup":
        answer = requests.post(
            url + "/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}, auth=AUTH, timeout=10
        )
        answer.raise_for_status()
        return answer.headers["X-Worker-Pid"], answer.json()["model_version"], []
    body = {"project": PROJECT, "label_config": SUPPORT_CONFIG, "tasks": [TASK]}
    answer = requests.post(url + "/predict", json=body, auth=AUTH, timeout=30)
    answer.raise_for_status()
    data = answer.json()
    return answer.headers["X-Worker-Pid"], data["model_version"], [r["model_version"] for r in data["results"]]


def sweep(url: str, expected: str, rounds: int = 12) -> set[str]:
    """Hit /setup and /predict until all 4 workers answered; every answer must carry ``expected``."""
    pids: set[str] = set()
    with ThreadPoolExecutor(16) as pool:
        for _ in range(rounds):
            answers = list(pool.map(lambda i: call(url, "setup" if i % 2 else "predict"), range(32)))
            for pid, version, results in answers:
                assert version == expected and all(v == expected for v in results), (pid, version, results)
                pids.add(pid)
            if len(pids) == 4:
                break
    return pids


def test_every_worker_serves_each_promoted_version(web, redis_server):
    from optimizer.runtime.services import Services

    settings, url = web
    services = Services(settings)
    v1 = services.store.current(PROJECT).version
    assert len(sweep(url, v1)) == 4
    parent = v1
    for n in range(3):
        policy = Policy(f"Label the conversation. Rule {n}: billing words mean Billing.")
        assert services.store.promote(PROJECT, policy, parent, job=f"train-{n}").ok
        assert len(sweep(url, policy.version)) == 4  # no worker kept serving the old version
        parent = policy.version
    # A rollback over the HTTP API swaps every worker back too.
    rolled = requests.post(f"{url}/projects/11/rollback", json={"version": v1}, auth=AUTH, timeout=10)
    assert rolled.status_code == 200 and rolled.json()["live"] == v1
    assert len(sweep(url, v1)) == 4
