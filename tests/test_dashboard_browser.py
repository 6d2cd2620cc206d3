"""The dashboard in a real headless browser (Debian's chromium), against the real stack.

The backend runs under gunicorn with a real RQ worker process; a scripted LLM and a fake Label Studio make two
training runs promote two versions (``testkit.staged``). The browser then opens every page and checks what a
person would: the run's reward curve has one point per step, the diff shows the changed lines, clicking a rollback
button moves the live marker (and ``/setup``, what Label Studio reads, follows), the Live page refreshes itself,
an instruction containing ``<script>`` stays text, and no page logs a console error. Screenshots go to the test
artefacts folder (``var/test-artifacts/dashboard``).
"""

from __future__ import annotations

import threading

import pytest

from optimizer.runtime.versions import policy_version
from testkit.backendprocess import BackendProcess
from testkit.constants import SUPPORT_CONFIG
from testkit.fakellm import FakeLLM
from testkit.fakels import FakeLabelStudio
from testkit.processes import wait_for
from testkit.staged import LEVEL_TWO, StagedResponder
from testkit.training_stack import AUTH, Stack, gold_tasks, shared_env
from tests.support import browser as browser_support
from tests.support.gating import need

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def stack(make_settings, namespace):
    from optimizer.runtime.services import Services

    responder = StagedResponder()
    with FakeLLM(responder) as llm, FakeLabelStudio(SUPPORT_CONFIG, gold_tasks(n=60, unlabelled=3)) as ls:
        settings = make_settings(
            llm_base_url=llm.base_url,
            rq_queue=namespace,
            label_studio_url=ls.url,
            label_studio_api_key=ls.token,
            optimize_budget=400,
            train_lease_ttl=5.0,
        )
        backend = BackendProcess(
            redis_url=settings.redis_url,
            llm_base_url=llm.base_url,
            namespace=settings.redis_namespace,
            basic_auth=AUTH,
            env={**shared_env(settings), "LLM_PRICE_INPUT_PER_1M": "0.15", "LLM_PRICE_OUTPUT_PER_1M": "0.60"},
            workers=2,
            threads=8,
        )
        s = Stack(settings, Services(settings), backend, ls, SUPPORT_CONFIG)
        s.responder = responder
        backend.start()
        try:
            yield s
        finally:
            s.close()


@pytest.fixture
def browser():
    reason = browser_support.missing()
    need(reason is None, reason or "")
    b = browser_support.Browser(*AUTH)
    yield b
    b.close()


def train(s: Stack, stage: int) -> dict:
    s.responder.stage = stage
    view = s.wait_job(s.webhook("START_TRAINING")["job"], timeout=120)
    assert view["status"] == "finished" and view["result"]["promoted"], view
    return view


def no_console_errors(b, page: str) -> None:
    errors = b.console_errors()
    assert errors == [], f"{page} logged console errors: {errors}"


def test_every_page_in_a_real_browser(stack, browser):
    s, b = stack, browser
    default = policy_version(s.setup_version())
    s.start_worker()
    first = train(s, 1)
    second = train(s, 2)
    middle, live = first["result"]["live_after"], second["result"]["live_after"]
    assert len({default, middle, live}) == 3

    # Label Studio asks for predictions: three answered, one task with nothing to label comes back empty.
    tasks = [{"id": 500 + i, "data": {"dialogue": [{"author": "Customer", "text": f"Billing #{i}"}]}} for i in range(3)]
    tasks.append({"id": 599, "data": {"unrelated": "x"}})
    body = {"tasks": tasks, "project": s.project, "label_config": SUPPORT_CONFIG}
    assert s.session.post(s.url + "/predict", json=body, timeout=30).status_code == 200

    # Projects: the project's live version and last run, with its JSON twin one click away.
    b.open(s.url + "/dashboard")
    row = b.css(f'tr[data-project="{s.project}"]')
    assert len(row) == 1 and live in row[0].text and "promoted" in row[0].text
    assert "25.0 %" in row[0].text and "1 empty" in row[0].text, row[0].text
    assert [a.get_attribute("href") for a in b.css("a.twin")] == [s.url + "/projects"]
    b.screenshot("projects")
    no_console_errors(b, "/dashboard")

    # A project: the live marker on the newest version, the diff's added lines, the hostile prompt as text.
    b.css(f'tr[data-project="{s.project}"] a')[0].click()
    wait_for(lambda: b.css("li.version-card"), 10, what="the project page")
    assert [c.get_attribute("data-version") for c in b.css("li.version-card.live")] == [live]
    added = [e.text for e in b.css(f'li[data-version="{live}"] pre.diff span.add')]
    assert any(line.startswith("+") and LEVEL_TWO in line for line in added), added
    assert "<script>window.__pwned = 1</script>" in b.css(f'li[data-version="{live}"] pre.instruction')[0].text
    assert b.js("return window.__pwned === undefined") is True
    b.screenshot("project")
    no_console_errors(b, "the project page")

    # Roll back by clicking: the marker moves, and Label Studio's /setup now gets the older version.
    b.css(f'li[data-version="{middle}"] button.rollback')[0].click()
    wait_for(lambda: b.css("p.notice"), 10, what="the page after the rollback")
    assert [c.get_attribute("data-version") for c in b.css("li.version-card.live")] == [middle]
    assert [c.get_attribute("data-version") for c in b.css("svg circle.pt.version.live")] == [middle]
    assert policy_version(s.setup_version()) == middle
    assert s.session.get(s.url + "/projects/1/policies", timeout=10).json()["live"] == middle
    b.screenshot("project-after-rollback")
    no_console_errors(b, "the project page after a rollback")

    # A run: one champion point per step, as many as the run's JSON twin has steps.
    twin = s.session.get(f"{s.url}/runs/{second['id']}", timeout=10).json()
    b.open(f"{s.url}/dashboard/runs/{second['id']}")
    points = b.css("svg circle.pt.champion")
    assert len(points) == len(twin["curve"]["steps"]) > 0
    assert [int(p.get_attribute("data-step")) for p in points] == [st["step"] for st in twin["curve"]["steps"]]
    assert "1.000" in b.css("#test-scores")[0].text
    assert {r.get_attribute("data-role") for r in b.css("#usage tr[data-role]")} == {"labeller", "proposer"}
    assert twin["priced"] and f"{twin['cost']:.4f}" in b.css("#cost")[0].text
    b.screenshot("run")
    no_console_errors(b, "the run page")

    # Live: a run held inside Label Studio's task listing shows up, then leaves the table without a reload.
    s.ls.hold = threading.Event()
    running = s.webhook("START_TRAINING")["job"]
    wait_for(lambda: s.ls.listings >= 3, 30, what="the third run to start")
    b.open(s.url + "/dashboard/live")
    assert b.css(f'tr[data-job="{running}"]'), b.css("#live")[0].text
    b.js("window.__sameDocument = true")
    wait_for(lambda: int(b.css("#refreshed")[0].get_attribute("data-refreshes")) >= 1, 10, what="a refresh")
    assert "started" in b.css(f'tr[data-job="{running}"]')[0].text
    b.screenshot("live")
    s.ls.hold.set()
    s.wait_job(running, timeout=120)
    wait_for(lambda: not b.css(f'tr[data-job="{running}"]'), 15, what="the finished run to leave the Live table")
    assert b.js("return window.__sameDocument === true") is True  # refreshed in place, not reloaded
    no_console_errors(b, "the Live page")
