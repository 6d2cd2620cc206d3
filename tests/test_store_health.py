"""PolicyStore.health() pings Redis at most every ``health_fresh`` seconds, yet still notices an outage."""

from __future__ import annotations

import time

import redis

from optimizer.serving.policy import Policy
from optimizer.state.store import PolicyStore
from testkit.redisserver import RedisServer


def pings(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))


def test_health_pings_at_most_every_health_fresh_and_still_sees_an_outage():
    server = RedisServer().start()  # its own: this test stops it
    client = redis.Redis.from_url(server.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    admin = redis.Redis.from_url(server.url)
    try:
        store = PolicyStore(client, Policy("Label it."), namespace="health", health_fresh=0.1)
        admin.config_resetstat()
        started = time.monotonic()
        while time.monotonic() - started < 0.35:
            assert store.health() == {"redis": "ok"}
        assert 1 <= pings(admin) <= 5  # hundreds of probes, a handful of pings
        store.current("p")  # a successful read counts as proof too
        admin.config_resetstat()
        assert store.health() == {"redis": "ok"} and pings(admin) == 0

        server.stop()
        time.sleep(0.15)
        assert store.health()["redis"] == "unreachable"
    finally:
        client.close()
        admin.close()
        server.cleanup()
