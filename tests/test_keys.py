"""Project names cannot reach another project's or a shared Redis key (the fuzz suite found ``projects`` did)."""

import pytest

from optimizer.state.keys import KeyMap

KEYS = KeyMap("ns")
PER_PROJECT = ("current", "history", "pinned", "policies", "config", "events", "train_state", "train_lease",
               "train_count")  # fmt: skip


def project_keys(project: str) -> set[str]:
    return {getattr(KEYS, name)(project) for name in PER_PROJECT if hasattr(KEYS, name)}


@pytest.mark.parametrize("project", ["projects", "job", "policy", "alias", "metrics", "15.1795300590", "default"])
def test_a_project_never_shares_a_key_with_the_shared_ones(project):
    shared = {KEYS.projects(), KEYS.train_projects(), KEYS.alias("15"), KEYS.policy("pv-1"), KEYS.train_job("j-1")}
    mine = project_keys(project)
    assert len(mine) == len([n for n in PER_PROJECT if hasattr(KEYS, n)])
    assert mine.isdisjoint(shared)
    assert all(mine.isdisjoint(project_keys(other)) for other in ("projects", "job", "x") if other != project)


def test_two_namespaces_on_one_redis_get_their_own_repredict_run(make_settings, namespace):
    """RQ's job keys are outside REDIS_NAMESPACE: a deterministic job id must carry the namespace, or a second
    backend (or test) promoting the same version of the same project finds the first one's run and skips its own."""
    from optimizer.jobs.queue import JobQueue
    from optimizer.runtime.services import Services

    def jobs(n: int):
        return JobQueue(Services(make_settings(redis_namespace=f"{namespace}{n}", rq_queue=f"{namespace}{n}")))

    ids = [jobs(n).enqueue_repredict("1.1795300590", "pv-0123456789ab") for n in (1, 2)]
    assert ids[0] != ids[1]
    views = [jobs(n).view(job) for n, job in zip((1, 2), ids, strict=True)]
    assert all(v is not None and v.status == "queued" for v in views), views
