"""Property-based fuzzing of the whole HTTP surface against a real gunicorn, a real Redis and the scripted LLM.

The routes come from ``/openapi.json`` (and a test checks that every route the app serves is described there), the
requests from ``tests/support/fuzzing.py``: recorded Label Studio payloads mutated at every depth. For each one the
service must answer below 500, every 4xx must be JSON naming the field to fix, no connection may drop, and
afterwards ``/health`` must still answer and the log must hold no unhandled error.

``make test`` runs ``FUZZ_EXAMPLES`` cases (default 1,000); ``make fuzz`` runs 10,000 and prints the tally.
"""

from __future__ import annotations

import collections
import os
import re
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from optimizer.serving.policy import Policy
from testkit.constants import SUPPORT_CONFIG
from testkit.lspayloads import uid
from tests.support.fuzzing import Case, Known, cases, names_the_field

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
AUTH = ("fuzz", "fuzz-secret-pass")
PROJECT = 15  # the id in the recorded payloads
CREATED = "2026-11-21T22:36:30.369002Z"


@pytest.fixture(scope="module")
def fuzz_llm():
    from testkit.fakellm import FakeLLM

    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def fuzz_ls():
    """Label Studio's API for the routes that read it (export): project 15 with the recorded config."""
    from testkit.fakels import FakeLabelStudio

    fake = FakeLabelStudio(SUPPORT_CONFIG, [{"id": 1, "data": {"dialogue": []}}], project_id=PROJECT)
    with fake:
        yield fake


@pytest.fixture(scope="module")
def backend(redis_server, fuzz_llm, fuzz_ls):
    from testkit.backendprocess import BackendProcess

    server = BackendProcess(
        redis_url=redis_server.url,
        llm_base_url=fuzz_llm.base_url,
        namespace="fuzz" + str(os.getpid()),
        basic_auth=AUTH,
        webhook_secret="fuzz-hook-secret",
        env={
            "MAX_BODY_BYTES": str(1024 * 1024),
            "LLM_MAX_RETRIES": "0",
            "RETRAIN_EVERY_N": "3",
            "LABEL_STUDIO_URL": fuzz_ls.url,
            "LABEL_STUDIO_API_KEY": fuzz_ls.token,
        },
    )
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def http(backend):
    with httpx.Client(base_url=backend.url, auth=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def known(http, backend, redis_server):
    """A project the backend knows, with two policy versions, so policy routes reach history code."""
    project = uid(PROJECT, CREATED)
    assert http.post("/setup", json={"project": project, "schema": SUPPORT_CONFIG}).status_code == 200
    from optimizer.runtime.services import Services
    from optimizer.settings import Settings

    settings = Settings(
        _env_file=None, redis_url=redis_server.url, redis_namespace=backend.env["REDIS_NAMESPACE"], llm_model="fake"
    )
    store = Services(settings).store
    live = store.current(project)
    better = Policy(live.instruction + "\nBe brief.")
    assert store.promote(project, better, live.version).ok
    return Known(str(PROJECT), project, (live.version, better.version))


@pytest.fixture(scope="module")
def document(http):
    answer = http.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def test_openapi_describes_every_route(backend, document):
    """A route missing from /openapi.json would escape the fuzzing: the description must list them all."""
    from _wsgi import create_app
    from optimizer.settings import Settings

    app = create_app(Settings(_env_file=None, redis_url=backend.env["REDIS_URL"], llm_base_url="http://127.0.0.1:9/v1"))
    served = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule), m.lower()) for r in app.url_map.iter_rules()
              for m in r.methods - {"HEAD", "OPTIONS"}}  # fmt: skip
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served - described == set(), "describe these routes in the OpenAPI document"
    assert {"/predict", "/setup", "/webhook", "/train", "/projects/{ref}/rollback"} <= set(document["paths"])


def test_a_refused_body_leaves_the_connection_usable(http, backend):
    """gunicorn drops a connection whose unread body exceeds 64 KiB, so a request refused before its body was read
    (too large, unauthenticated, an unknown project) would break the caller's next request on that connection."""
    json_type = {"Content-Type": "application/json"}
    too_big = b'{"tasks": [], "x": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    big = b'{"version": "pv-1", "x": "' + b"a" * (200 * 1024) + b'"}'
    for path, body, status in (("/predict", too_big, 413), ("/projects/99999/rollback", big, 404)):
        for _ in range(2):
            answer = http.post(path, content=body, headers=json_type)
            assert answer.status_code == status and answer.json()["field"] in ("body", "project")
            assert http.get("/health").status_code == 200  # same keep-alive connection
    with httpx.Client(base_url=backend.url, timeout=30) as anonymous:
        for _ in range(2):
            assert anonymous.post("/predict", content=big, headers=json_type).status_code == 401
            assert anonymous.get("/health").status_code == 200


def test_fuzzed_requests_never_get_a_server_error(http, backend, document, known):
    tally: collections.Counter = collections.Counter()
    failures: list[str] = []
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=cases(document, known))
    def check(case: Case) -> None:
        headers = {"Content-Type": "application/json"} if case.body is not None else {}
        try:
            answer = http.request(case.method, case.path, params=case.query, content=case.body, headers=headers)
        except httpx.HTTPError as exc:
            tally["dropped"] += 1
            failures.append(f"{case!r}: connection failed: {exc!r}\n{backend.log_tail(30)}")
            raise AssertionError(failures[-1]) from None
        tally["cases"] += 1
        tally[answer.status_code // 100 * 100] += 1
        if answer.status_code >= 500:
            failures.append(f"{case!r}: {answer.status_code} {answer.text[:300]}")
        assert answer.status_code < 500, failures[-1]
        if 400 <= answer.status_code < 500 and not case.html:
            assert answer.headers["content-type"].startswith("application/json"), case
            payload = answer.json()
            assert names_the_field(payload), f"{case!r}: 4xx does not name its field: {payload}"

    check()
    elapsed = time.monotonic() - started
    print(
        f"\nfuzz: {tally['cases']} cases in {elapsed:.0f} s; 2xx {tally[200]}, 4xx {tally[400]}, "
        f"5xx {tally[500]}, dropped connections {tally['dropped']}"
    )
    assert tally["cases"] >= min(EXAMPLES, 100) and tally[500] == 0 and tally["dropped"] == 0
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "UP"
    log = backend.log_tail(100000)
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
