"""Hot-swap across 4 real gunicorn workers: after a promotion, every worker answers with the new version."""

from __future__ import annotations

import pytest
import requests

from optimizer.serving.policy import Policy
from testkit.lspayloads import uid
from tests.support.workers import sweep as support_sweep

pytestmark = pytest.mark.slow

PROJECT = uid(11)
AUTH = ("admin", "s3cret-pass")


@pytest.fixture
def web(make_settings, namespace, start_backend, fake_llm):
    settings = make_settings(rq_queue=namespace)
    backend = start_backend(
        fake_llm.base_url,
        namespace=namespace,
        basic_auth=AUTH,
        workers=4,
        app="testkit.pidapp:app",
        env={"DEFAULT_PROMPT": settings.default_prompt},
    )
    return settings, backend.url


def sweep(url: str, expected: str) -> set[str]:
    """Hit /setup and /predict until all 4 workers answered; every answer must carry ``expected``."""
    return support_sweep(url, expected, PROJECT, AUTH, 4, rounds=12, batch=32)


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
