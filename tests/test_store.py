"""The Redis policy store against a real redis-server."""

import pytest

from optimizer.serving.policy import Policy
from optimizer.state.keys import KeyMap, Script
from optimizer.state.store import PolicyStore

DEFAULT = Policy("Default instruction.")


@pytest.fixture
def store(redis_client, namespace):
    return PolicyStore(redis_client, DEFAULT, namespace=namespace)


def test_first_sight_registers_the_default(store, redis_client, namespace):
    assert store.current("p1") == DEFAULT
    assert redis_client.get(f"{namespace}:project:p1:current") == DEFAULT.version
    assert Policy.from_json(redis_client.get(KeyMap(namespace).policy(DEFAULT.version))) == DEFAULT


def test_promotion_is_compare_and_set(store):
    parent = store.current_version("p1")
    first, second = Policy("Candidate one."), Policy("Candidate two.")
    assert store.promote("p1", first, parent=parent).ok
    stale = store.promote("p1", second, parent=parent)
    assert stale.status == "stale" and store.current("p1") == first
    assert store.promote("p1", first, parent=first.version).status == "unchanged"


def test_pinned_project_is_never_auto_promoted(store, redis_client, namespace):
    parent = store.current_version("p1")
    redis_client.set(f"{namespace}:project:p1:pinned", "1")
    assert store.promote("p1", Policy("New."), parent=parent).status == "pinned"
    assert store.current("p1") == DEFAULT
    assert store.promote("p1", Policy("Forced."), parent=parent, force=True).ok


def test_another_process_sees_a_promotion_on_its_next_read(store, redis_client, namespace):
    other = PolicyStore(redis_client, DEFAULT, namespace=namespace)
    assert other.current("p1") == DEFAULT
    promoted = Policy("Promoted.", meta={"val_score": 0.9})
    assert store.promote("p1", promoted, parent=DEFAULT.version, job_id="j1").ok
    seen = other.current("p1")
    assert seen == promoted and seen.meta == {"val_score": 0.9}


def test_promotion_appends_history(store, redis_client, namespace):
    import json

    store.current("p1")
    store.promote("p1", Policy("One."), parent=DEFAULT.version, job_id="job-1")
    (entry,) = [json.loads(e) for e in redis_client.lrange(f"{namespace}:project:p1:history", 0, -1)]
    assert entry["version"] == Policy("One.").version and entry["parent"] == DEFAULT.version
    assert entry["job_id"] == "job-1"


def test_lua_scripts_take_their_keys_and_arguments_by_name(redis_client, namespace):
    """A call that misses or misspells a name fails before reaching Redis; a right one sees each value by name."""
    echo = Script(redis_client, ("target",), ("value",), "redis.call('SET', k_target, a_value)\nreturn a_value")
    key = KeyMap(namespace).policy("probe")
    assert echo(target=key, value="v1") == "v1" and redis_client.get(key) == "v1"
    with pytest.raises(TypeError, match="missing \\['value'\\]"):
        echo(target=key)
    with pytest.raises(TypeError, match="unknown \\['valu'\\]"):
        echo(target=key, value="x", valu="y")
    with pytest.raises(ValueError):
        Script(redis_client, ("same",), ("same",), "return 1")


def test_a_slow_read_of_an_older_version_never_replaces_the_newer_one_kept_for_outages(namespace):
    """Two requests read the live version at once; the one that started first finishes last with the version from
    before a promotion. What the store keeps for an outage must still be the newer one."""
    import threading

    import redis

    from testkit.redisserver import RedisServer

    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=0.2)
        store = PolicyStore(client, DEFAULT, namespace=namespace, retry_interval=60)
        parent = store.current_version("p1")
        newer = Policy("Promoted while a read was in flight.")
        read, held, release = store._read_current, threading.Event(), threading.Event()

        def slow_read(project):
            policy = read(project)  # reads the version from before the promotion...
            held.set()
            release.wait(10)  # ...and finishes only after a newer read has finished
            return policy

        store._read_current = slow_read
        slow = threading.Thread(target=store.current, args=("p1",))
        slow.start()
        assert held.wait(10)
        store._read_current = read
        assert store.promote("p1", newer, parent=parent).ok
        assert store.current("p1") == newer
        release.set()
        slow.join(10)
        server.stop()  # an outage: the store serves what it kept
        assert store.current("p1") == newer
    finally:
        server.cleanup()
