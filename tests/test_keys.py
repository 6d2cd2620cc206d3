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
