"""Redis restarted, not only stopped, under a real multi-worker gunicorn backend: what every worker serves after.

A stop tests the degraded path (serve the last policy seen); a restart also tests the way back: every worker must
leave its in-process memory behind and serve exactly what the restarted Redis holds, whether Redis kept its data
(AOF), lost it (no persistence) or was killed in the middle of a stream of promotions. Everything here is real: a
``redis-server`` of the test's own (it is killed with SIGKILL and restarted on the same port), ``gunicorn`` with
several forked workers (``testkit.pidapp`` tags answers with the worker's pid), basic auth, and the scripted
OpenAI-compatible LLM.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from optimizer.serving.policy import Policy
from optimizer.state.store import PromoteStatus, StoreUnavailable
from testkit.lspayloads import uid
from testkit.processes import wait_for
from testkit.redisserver import RedisServer
from tests.support.workers import Answer, call, serves
from tests.support.workers import sweep as support_sweep

pytestmark = pytest.mark.slow

PROJECT = uid(12)
AUTH = ("admin", "s3cret-pass")
WORKERS = 3
CONVERGE = 20.0  # seconds a worker may take to follow Redis: its store retries at most once a second


class Traffic:
    """Client threads posting ``/predict`` and ``/setup`` without pause until stopped; every answer is kept.

    A transport failure (refused, reset, timed out) is kept too: during a Redis outage the backend must answer, not
    hang or drop the connection.
    """

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, index: int) -> None:
        routes = itertools.cycle(["predict", "setup", "predict"] if index % 2 else ["predict"])
        while not self._stop.is_set():
            try:
                self.answers.append(call(self.url, next(routes), PROJECT, AUTH))
            except (requests.RequestException, ValueError) as exc:
                self.failures.append(f"{exc.__class__.__name__}: {exc}")

    def since(self, moment: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.started >= moment]

    def pids_serving(self, version: str, after: float) -> set[str]:
        """Workers that answered ``version`` (in the reply and every result) to a request sent after ``after``."""
        return {a.pid for a in self.since(after) if a.status == 200 and serves(a, version)}


def worker_pids(master: int) -> set[str]:
    """The gunicorn master's children, i.e. its workers (gunicorn forks nothing else)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return set(children)


def sweep(url: str, expected: str, workers: set[str]) -> None:
    """Quiet traffic until every worker answered: each answer, from every worker, must carry ``expected``."""
    seen = support_sweep(url, expected, PROJECT, AUTH, workers)
    assert seen >= workers, f"workers {sorted(workers - seen)} never answered the sweep"


def assert_follows_redis(traffic: Traffic, version: str, after: float, workers: set[str]) -> None:
    """Once a worker has answered ``version``, every request it takes after that answer carries ``version`` too.

    A worker may lag Redis for up to its retry interval after an outage (it serves its last policy until it tries
    again), but it must never go back once it has caught up.
    """
    for pid in workers:
        mine = sorted((a for a in traffic.since(after) if a.pid == pid), key=lambda a: a.started)
        caught_up = min(a.ended for a in mine if serves(a, version))
        later = [a for a in mine if a.started > caught_up and not serves(a, version)]
        assert not later, f"worker {pid} went back from {version} to {later[0]}"


def assert_no_server_errors(traffic: Traffic, backend) -> None:
    """No 5xx on the client side nor in the backend's own request log, and no dropped or hung request."""
    assert traffic.failures == []
    statuses = {a.status for a in traffic.answers}
    assert statuses == {200}, statuses
    logged = {(e.path, e.status) for e in backend.requests() if e.status >= 500}
    assert not logged, logged


@pytest.fixture
def restartable(make_settings, namespace, start_backend, fake_llm):
    """``restartable(persistent) -> (redis server, Services, backend, raw client, worker pids)``, torn down after.

    The Redis is the test's own (it gets killed); the test process promotes through ``Services`` like a training
    job and reads the truth with a plain client. The backend reads Redis with a 0.2 s timeout so that requests
    during the outage are answered promptly.
    """
    from optimizer.runtime.services import Services

    made: list[tuple[RedisServer, Services, redis.Redis]] = []

    def build(persistent: bool):
        server = RedisServer(persistent=persistent).start()
        settings = make_settings(redis_url=server.url, rq_queue=namespace, redis_timeout=0.2)
        services = Services(settings)
        raw = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=2)
        made.append((server, services, raw))
        backend = start_backend(
            fake_llm.base_url,
            redis_url=server.url,
            namespace=namespace,
            basic_auth=AUTH,
            workers=WORKERS,
            threads=4,
            app="testkit.pidapp:app",
            env={"DEFAULT_PROMPT": settings.default_prompt, "REDIS_TIMEOUT": "0.2"},
        )
        wait_for(lambda: len(worker_pids(backend.web.pid)) == WORKERS, CONVERGE, what=f"{WORKERS} workers forked")
        workers = worker_pids(backend.web.pid)
        return server, services, backend, raw, workers

    yield build
    for server, services, raw in made:
        raw.close()
        services.redis.close()
        server.cleanup()


def outage(server: RedisServer, traffic: Traffic, url: str, workers: set[str]) -> tuple[float, float]:
    """SIGKILL Redis, keep it down until every worker has answered without it, start it again on the same port.

    Each worker must answer after its store's retry interval (1 s) has passed, i.e. after it tried Redis again and
    found it still gone, so every worker is serving from its in-process memory when Redis comes back. Returns the
    monotonic times Redis went down and came back.
    """
    server.stop()
    down = time.monotonic()
    wait_for(
        lambda: {a.pid for a in traffic.since(down + 1.2)} >= workers,
        CONVERGE,
        what="every worker answering during the outage",
    )
    health = requests.get(f"{url}/health", timeout=5).json()
    assert health["status"] == "UP" and health["redis"] == "unreachable", health
    port = server.port
    server.start()
    assert server.port == port
    return down, time.monotonic()


def test_restart_during_predict_traffic_keeps_the_data_and_every_worker_follows(restartable):
    server, services, backend, raw, workers = restartable(persistent=True)
    store = services.store
    v1 = store.current_version(PROJECT)
    v2 = Policy("Label the conversation. Rule 2: invoices mean Billing.")
    v3 = Policy("Label the conversation. Rule 3: refunds mean Billing.")
    with Traffic(backend.url) as traffic:
        assert store.promote(PROJECT, v2, v1, job="before-restart").ok
        promoted = time.monotonic()
        wait_for(lambda: traffic.pids_serving(v2.version, promoted) >= workers, CONVERGE, what="every worker on v2")

        down, up = outage(server, traffic, backend.url, workers)
        during = [a for a in traffic.answers if a.started >= down and a.ended <= up]
        assert {a.pid for a in during} >= workers
        assert all(serves(a, v2.version) for a in during), {a.version for a in during}

        # The AOF kept v2 live, so a promotion derived from it applies.
        assert raw.get(store.keys.current(PROJECT)) == v2.version
        assert store.promote(PROJECT, v3, v2.version, job="after-restart").ok
        promoted = time.monotonic()
        wait_for(lambda: traffic.pids_serving(v3.version, promoted) >= workers, CONVERGE, what="every worker on v3")
    assert_no_server_errors(traffic, backend)
    assert_follows_redis(traffic, v3.version, promoted, workers)
    assert raw.get(store.keys.current(PROJECT)) == v3.version
    sweep(backend.url, v3.version, workers)
    assert worker_pids(backend.web.pid) == workers  # no worker crashed and was replaced


def test_restart_that_loses_the_data_makes_every_worker_drop_its_memory_of_the_lost_version(restartable):
    server, services, backend, raw, workers = restartable(persistent=False)
    store = services.store
    default = services.default_policy.version
    v2 = Policy("Label the conversation. Rule 2: invoices mean Billing.")
    assert store.current_version(PROJECT) == default
    with Traffic(backend.url) as traffic:
        assert store.promote(PROJECT, v2, default, job="lost").ok
        promoted = time.monotonic()
        wait_for(lambda: traffic.pids_serving(v2.version, promoted) >= workers, CONVERGE, what="every worker on v2")

        down, up = outage(server, traffic, backend.url, workers)  # back empty: no AOF, no RDB
        during = [a for a in traffic.answers if a.started >= down and a.ended <= up]
        assert during and all(serves(a, v2.version) for a in during), {a.version for a in during}
        wait_for(
            lambda: traffic.pids_serving(default, up) >= workers, CONVERGE, what="every worker back on the default"
        )
    assert_no_server_errors(traffic, backend)
    assert_follows_redis(traffic, default, up, workers)
    # What Redis now holds: the default, registered again by the first read, and no trace of v2.
    assert raw.get(store.keys.current(PROJECT)) == default
    assert raw.exists(store.keys.policy(v2.version)) == 0
    sweep(backend.url, default, workers)
    # A promotion derived from the lost v2 (a training run that started before the restart) is refused as stale.
    late = Policy("Label the conversation. Rule 3: derived from the lost v2.")
    assert store.promote(PROJECT, late, v2.version, job="late").status is PromoteStatus.STALE
    assert worker_pids(backend.web.pid) == workers


class Promoter(threading.Thread):
    """Promotes a child of the current version, again and again, recording what each attempt did."""

    def __init__(self, services) -> None:
        super().__init__(daemon=True)
        self.services = services
        self.store = services.store
        self.ok: list[str] = []
        self.stale: list[str] = []
        self.failed: list[tuple[str, str]] = []  # (version, error) of attempts that hit the outage
        self.other: list[str] = []  # anything else is a bug
        self.stopping = threading.Event()

    def run(self) -> None:
        parent = None
        for n in itertools.count():
            if self.stopping.is_set():
                return
            # The parent is read fresh when Redis answers; during the outage the last one read is used, like a
            # training run that read its parent before Redis went away and finished while it was gone.
            with contextlib.suppress(redis.RedisError):
                parent = self.services.redis.get(self.store.keys.current(PROJECT))
            child = Policy(f"Label the conversation. Promotion {n}: billing words mean Billing.")
            try:
                result = self.store.promote(PROJECT, child, parent, job=f"loop-{n}")
            except (StoreUnavailable, redis.RedisError) as exc:
                self.failed.append((child.version, exc.__class__.__name__))
                time.sleep(0.02)
                continue
            except Exception as exc:  # anything but an outage is a bug: recorded, asserted empty
                self.other.append(repr(exc))
                continue
            (self.ok if result.ok else self.stale).append(child.version)


def test_restart_during_promotions_leaves_nothing_half_done(restartable):
    server, services, backend, raw, workers = restartable(persistent=True)
    store = services.store
    default = store.current_version(PROJECT)
    promoter = Promoter(services)
    with Traffic(backend.url, threads=2) as traffic:
        promoter.start()
        wait_for(lambda: len(promoter.ok) >= 20, CONVERGE, what="promotions before the restart")
        server.stop()
        wait_for(lambda: len(promoter.failed) >= 3, CONVERGE, what="promotions that hit the outage")
        server.start()
        before = len(promoter.ok)
        wait_for(lambda: len(promoter.ok) >= before + 20, CONVERGE, what="promotions after the restart")
        promoter.stopping.set()
        promoter.join(30)
        assert not promoter.is_alive()
        settled = time.monotonic()
        current = raw.get(store.keys.current(PROJECT))
        wait_for(lambda: traffic.pids_serving(current, settled) >= workers, CONVERGE, what="every worker on current")
    assert promoter.other == []
    assert promoter.failed and {error for _, error in promoter.failed} <= {"StoreUnavailable"}

    # The current version's body exists and is that version.
    body = raw.get(store.keys.policy(current))
    assert body is not None and Policy.from_json(body).version == current
    # The promotion log ends at the current version and is one unbroken chain of compare-and-sets from the default.
    log = [json.loads(entry) for entry in raw.lrange(store.keys.history(PROJECT), 0, -1)]
    assert log[-1]["version"] == current
    assert log[0]["parent"] == default
    assert all(later["parent"] == earlier["version"] for earlier, later in itertools.pairwise(log))
    # Every promotion that reported success survived the kill (AOF, fsync always); nothing appears that was never
    # attempted; every logged version has its body and its record.
    logged = [entry["version"] for entry in log]
    assert set(promoter.ok) <= set(logged)
    assert set(logged) <= set(promoter.ok) | {version for version, _ in promoter.failed}
    records = raw.hgetall(store.keys.policies(PROJECT))
    for version in logged:
        assert raw.exists(store.keys.policy(version)) and version in records, version

    assert_no_server_errors(traffic, backend)
    assert_follows_redis(traffic, current, settled, workers)
    sweep(backend.url, current, workers)
    assert worker_pids(backend.web.pid) == workers
