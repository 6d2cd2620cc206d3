"""The bulk plan pages, the chunks read only what they need, and the LLM limits follow the endpoint.

In-process against real Redis and the scripted Label Studio (``testkit/fakels.py``, which answers the same Data
Manager filters as Label Studio 1.23.2; ``test_bulk_labelstudio.py`` runs them against the real one).
"""

from __future__ import annotations

import pytest

from optimizer.jobs.bulk import BulkRequest, plan_run, run_chunk
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.runtime.services import Services
from optimizer.runtime.versions import served_version
from optimizer.settings import Settings
from testkit.constants import SUPPORT_CONFIG
from testkit.fakels import FakeLabelStudio
from testkit.lspayloads import uid
from testkit.training_stack import gold_tasks

PROJECT = uid(1)


def prediction(version: str) -> dict:
    return {"model_version": version, "result": [{"from_name": "intent", "value": {"choices": ["Greeting"]}}]}


@pytest.fixture
def project(make_settings, fake_llm):
    """23 tasks: 2 annotated, 3 already holding the live version's prediction (one of them annotated), 18 to do."""
    tasks = gold_tasks(n=2, unlabelled=21)
    with FakeLabelStudio(SUPPORT_CONFIG, tasks) as ls:
        ls.max_page_size = 5  # Label Studio's pages are 100 tasks; 5 makes 23 tasks span several pages
        services = Services(make_settings(label_studio_url=ls.url, label_studio_api_key=ls.token, bulk_chunk=4))
        services.projects.seen(PROJECT, SUPPORT_CONFIG)
        version = services.store.current(PROJECT).version
        served = served_version(version, parse_label_config(SUPPORT_CONFIG), services.project_settings(PROJECT))
        for task in (ls.tasks[1], ls.tasks[6], ls.tasks[7]):
            task["predictions"].append(prediction(served))
        services.label_studio.page_size = 5
        yield services, ls, version, served


def test_the_plan_pages_ids_only_and_misses_nothing_while_chunks_post(project):
    """Chunks post while the plan still pages, so the listing shrinks under it: a page number would skip as many
    tasks as were posted; asking for ids above the last one seen skips none and queues none twice."""
    services, ls, version, served = project
    queued: list[list[int]] = []

    def enqueue(chunk_id: str, n: int, part: list[int]) -> str:
        queued.append(part)
        for task in part:  # as if the chunk ran at once and posted its tasks
            ls.tasks[task - 1]["predictions"].append(prediction(served))
        return chunk_id

    summary = plan_run(services, "run-p", BulkRequest(PROJECT, version), enqueue)
    expected = [t["id"] for t in ls.tasks if t["id"] not in (2, 7, 8)]
    assert [task for part in queued for task in part] == expected
    assert all(len(part) == 4 for part in queued[:-1]) and summary["chunks"] == len(queued) == 5
    run = services.bulk.run("run-p")
    assert run["total"] == 20 and run["planned"] is True and run["tasks"] == {"skipped": 3}
    assert run["chunks"]["queued"] == 5 and len(services.bulk.open_chunks("run-p")) == 5
    listings = [p for p in ls.listing_params if p["query"].get("filters")]
    assert listings and all(p["include"] == "id" and p["fields"] != "all" for p in listings)  # ids, never bodies
    assert all(p["page"] == 1 for p in ls.listing_params)  # keyset: always the first page above the last id


def test_skip_annotated_and_named_tasks_count_what_they_leave(project):
    services, _, version, _served = project
    queued: list[int] = []
    request = BulkRequest(PROJECT, version, skip_annotated=True)
    plan_run(services, "run-a", request, lambda c, n, part: queued.extend(part) or c)
    assert 1 not in queued and 2 not in queued and len(queued) == 23 - 2 - 2  # annotated, or already predicted
    named: list[int] = []
    request = BulkRequest(PROJECT, version, tasks=(3, 7, 99, 3))
    plan_run(services, "run-n", request, lambda c, n, part: named.extend(part) or c)
    assert named == [3]
    assert services.bulk.run("run-n")["tasks"] == {"skipped": 1, "missing": 1}


def test_a_chunk_reads_only_ids_and_data_of_its_claimed_tasks(project):
    services, ls, version, served = project
    before = len(ls.listing_params)
    result = run_chunk(services, PROJECT, version, [3, 4, 7, 99], "holder-1")
    assert result.outcomes["posted"] == 2 and result.outcomes["skipped_in_ls"] == 2  # 7 had it, 99 is gone
    reads = ls.listing_params[before:]
    assert reads and all(p["include"] in ("id,data", "id") and p["fields"] != "all" for p in reads), reads
    assert all(p["query"]["selectedItems"]["included"] == [3, 4, 7, 99] for p in reads if p["include"] == "id,data")
    assert services.redis.keys(services.bulk.keys.bulk_claim(PROJECT, served, "*")) == []  # claims released


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, (2, 2, True)),  # the defaults: the embedded server on this host
        ({"llm_base_url": "http://llm:8081/v1"}, (2, 2, True)),  # compose's llm service
        ({"llm_base_url": "https://api.openai.com/v1"}, (16, 16, False)),  # .env.local pointing elsewhere
        ({"embedded_llm": False}, (16, 16, False)),
        ({"llm_base_url": "https://api.openai.com/v1", "llm_concurrency": 4}, (4, 16, False)),
        ({"llm_global_concurrency": 0}, (2, 0, True)),
    ],
)
def test_unset_llm_limits_follow_the_endpoint(values, expected):
    settings = Settings(_env_file=None, **values)
    limits = settings.llm_limits
    assert (settings.llm_concurrency, settings.llm_global_concurrency, limits.embedded) == expected
    derived = {name.upper() for name in ("llm_concurrency", "llm_global_concurrency") if name not in values}
    assert set(limits.to_dict()["defaults"]) == derived
    assert f"{expected[0]} per web process" in limits.line()


def test_health_and_the_start_up_line_show_the_limits_in_force(make_settings):
    from _wsgi import create_app

    settings = make_settings(llm_global_concurrency=5)  # the fake LLM is not the embedded server: 16 per process
    health = create_app(settings).test_client().get("/health").get_json()
    assert health["llm_limits"] == {"llm_concurrency": 16, "llm_global_concurrency": 5,
                                    "defaults": {"LLM_CONCURRENCY": "the default for a hosted endpoint"}}  # fmt: skip
    assert settings.llm_limits.line() == (
        "LLM limits: 16 per web process, 5 stack-wide (LLM_CONCURRENCY: the default for a hosted endpoint)"
    )


@pytest.mark.parametrize("named", [False, True])
def test_a_plan_that_fails_mid_listing_goes_on_from_its_last_chunk_when_retried(project, named):
    """Label Studio fails after two chunks were queued; the retried plan (RQ's, here by hand) queues the rest, each
    task once, numbers its chunks on, and counts what it left alone once."""
    from optimizer.labelstudio.client import LabelStudioUnavailable

    services, ls, version, _served = project
    queued: list[list[int]] = []

    def enqueue(chunk_id: str, n: int, part: list[int]) -> str:
        assert chunk_id == f"run-r-{n}" and n == len(queued)
        queued.append(part)
        if len(queued) == 2:
            ls.fail_tasks = 500  # every listing from now on
        return chunk_id

    request = BulkRequest(PROJECT, version, tasks=tuple(t["id"] for t in ls.tasks) if named else None)
    with pytest.raises(LabelStudioUnavailable):
        plan_run(services, "run-r", request, enqueue)
    assert len(queued) in (2, 3) and services.bulk.run("run-r")["planned"] is False  # chunks of the pages read
    ls.fail_tasks = None
    summary = plan_run(services, "run-r", request, enqueue)
    ids = [task for part in queued for task in part]
    assert ids == [t["id"] for t in ls.tasks if t["id"] not in (2, 7, 8)]  # each once, in order
    run = services.bulk.run("run-r")
    assert summary["chunks"] == 5 and run["planned"] is True and run["total"] == run["queued"] == 20
    assert run["tasks"] == {"skipped": 3}  # not counted twice


def test_a_plan_with_nothing_left_to_do_counts_every_task_as_skipped(project):
    services, ls, version, served = project
    for task in ls.tasks:
        if not any(p["model_version"] == served for p in task["predictions"]):
            task["predictions"].append(prediction(served))
    summary = plan_run(services, "run-0", BulkRequest(PROJECT, version), lambda c, n, part: c)
    assert summary["chunks"] == 0 and summary["total"] == 0
    assert services.bulk.run("run-0")["tasks"] == {"skipped": len(ls.tasks)}
