"""Telling gunicorn workers apart from outside: which worker answered a request, and with which policy version.

The hot-swap and Redis-restart tests both need "every worker serves version V": a request on a fresh connection
lands on any worker, ``testkit.pidapp`` tags the answer with the worker's pid, and a sweep keeps calling
until every worker has answered, asserting each answer on the way.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from optimizer.runtime.versions import policy_version
from testkit.constants import SUPPORT_CONFIG

TASK = {"id": 1, "data": {"dialogue": [{"author": "Customer", "text": "Billing question about my invoice"}]}}


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    route: str
    status: int
    pid: str
    version: str
    results: tuple[str, ...]


def call(url: str, route: str, project: str, auth: tuple[str, str]) -> Answer:
    """One ``/setup`` or ``/predict`` on a fresh connection (so requests spread over the workers), as its answer."""
    started = time.monotonic()
    if route == "setup":
        body = {"project": project, "schema": SUPPORT_CONFIG}
    else:
        body = {"project": project, "label_config": SUPPORT_CONFIG, "tasks": [TASK]}
    response = requests.post(f"{url}/{route}", json=body, auth=auth, timeout=30)
    ended = time.monotonic()
    data = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
    results = tuple(r.get("model_version", "") for r in data.get("results", []) if isinstance(r, dict))
    pid = response.headers.get("X-Worker-Pid", "")
    return Answer(started, ended, route, response.status_code, pid, str(data.get("model_version", "")), results)


def serves(answer: Answer, version: str) -> bool:
    """The answer and every result in it carry policy ``version`` (the served version adds the config's and the
    model's parts, which these tests do not change)."""
    return policy_version(answer.version) == version and all(policy_version(v) == version for v in answer.results)


def sweep(url: str, expected: str, project: str, auth: tuple[str, str], workers: int | set[str], *,
          rounds: int = 15, batch: int = 16) -> set[str]:  # fmt: skip
    """Alternate ``/setup`` and ``/predict`` until ``workers`` (a count, or the pids) have all answered; every
    answer must be a 200 carrying ``expected``. Returns the pids seen."""
    seen: set[str] = set()

    def covered() -> bool:
        return len(seen) >= workers if isinstance(workers, int) else seen >= workers

    with ThreadPoolExecutor(min(batch, 16)) as pool:
        for _ in range(rounds):
            answers = pool.map(lambda i: call(url, "setup" if i % 2 else "predict", project, auth), range(batch))
            for a in answers:
                assert a.status == 200 and serves(a, expected), (a, expected)
                seen.add(a.pid)
            if covered():
                break
    return seen
