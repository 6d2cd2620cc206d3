"""Live quality and cost against a real Label Studio 1.23.2, read in Debian's chromium.

Label Studio retrieves predictions from the backend (gunicorn, basic auth, the scripted LLM under a model name the
price table knows), then annotations are created and updated through the SDK, as an annotator's saves are. Label
Studio's own webhooks carry them to the backend; the project page in a real browser must show the per-label figures
they add up to, counted once per annotation, and the day's spend; ``/metrics`` must carry both. Then a daily limit
set in the model's Extra params stops serving: the next Retrieve Predictions leaves Label Studio without a
prediction for the new tasks, counted under the reason ``budget``.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from testkit.processes import wait_for
from tests.support import browser as browser_support
from tests.support.gating import need

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser, pytest.mark.slow]

AUTH = ("quality", "quality-pass-123")
SECRET = "hook-secret-quality"
CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="intent" toName="text" choice="single">
    <Choice value="Billing"/><Choice value="Cancellation"/><Choice value="Other"/>
  </Choices>
</View>"""


def intent(label: str) -> list[dict]:
    return [{"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def cells(b, label: str) -> dict[str, str]:
    row = b.css(f'table.labels[data-control="intent"] tr.label-row[data-label="{label}"]')
    assert len(row) == 1, f"no row for {label}"
    return {name: row[0].find_element("css selector", f"td.{name}").text for name in ("support", "tp", "fp", "fn")}


def test_annotations_saved_in_label_studio_move_the_live_figures_and_spend_shows_and_stops(
    labelstudio, start_backend, fake_llm
):
    reason = browser_support.missing()
    need(reason is None, reason or "")
    backend = start_backend(
        fake_llm.base_url,
        basic_auth=AUTH,
        webhook_secret=SECRET,
        namespace="quality" + uuid.uuid4().hex[:8],
        env={"LLM_MODEL": "gpt-4o-mini"},  # priced from the table: $0.15 / $0.60 per 1M tokens
    )
    http = httpx.Client(base_url=backend.url, auth=AUTH, timeout=30)
    texts = ["a billing question", "please process my cancellation", "something else entirely"]
    project, task_ids = labelstudio.create_project(CONFIG, [{"text": t} for t in texts])
    ml = labelstudio.connect_with_secret(project.id, backend.url, AUTH, SECRET)
    labelstudio.retrieve_predictions(project.id, task_ids)
    version = labelstudio.ml_backend(ml.id)["model_version"]
    held = {t: [p["result"][0]["value"]["choices"] for p in labelstudio.predictions(t)] for t in task_ids}
    assert list(held.values()) == [[["Billing"]], [["Cancellation"]], [["Billing"]]]  # the last one is wrong

    def quality() -> dict:
        return http.get(f"/projects/{project.id}/quality").json()

    def scored() -> int:
        rows = [v for v in quality()["versions"] if v["version"] == version]
        return rows[0]["annotations"] if rows else 0

    # Annotators agree on the first two tasks and correct the third.
    for task, label in zip(task_ids, ["Billing", "Cancellation", "Other"], strict=True):
        labelstudio.client.annotations.create(id=task, result=intent(label))
    wait_for(lambda: scored() == 3, 30, what="Label Studio's webhooks for three annotations")

    b = browser_support.Browser(*AUTH)
    try:
        b.open(f"{backend.url}/dashboard/projects/{project.id}")
        row = b.css(f'#live-versions tr[data-version="{version}"]')
        assert row and row[0].find_element("css selector", "td.annotations").text == "3"
        assert cells(b, "Billing") == {"support": "1", "tp": "1", "fp": "1", "fn": "0"}
        assert cells(b, "Other") == {"support": "1", "tp": "0", "fp": "0", "fn": "1"}
        confusion = b.css('table.confusion[data-control="intent"] tr[data-label="Other"] td.miss')
        assert [c.text for c in confusion] == ["1"]  # annotated Other, predicted Billing
        b.screenshot("live-quality-before-update")

        # The annotator changes their mind on the first task: its earlier score is replaced, not added to.
        first = labelstudio.client.annotations.list(id=task_ids[0])[0]
        labelstudio.client.annotations.update(id=first.id, result=intent("Other"))
        wait_for(
            lambda: label_counts(http, project.id, "Other").get("fn") == 2, 30, what="the ANNOTATION_UPDATED webhook"
        )
        b.open(f"{backend.url}/dashboard/projects/{project.id}")
        assert b.css(f'#live-versions tr[data-version="{version}"] td.annotations')[0].text == "3"
        assert cells(b, "Billing") == {"support": "0", "tp": "0", "fp": "2", "fn": "0"}
        assert cells(b, "Other") == {"support": "2", "tp": "0", "fp": "0", "fn": "2"}
        f1 = b.css(f'#live-versions tr[data-version="{version}"] td.f1')[0].text
        assert f1.startswith("0.333"), f1  # one of three annotations agrees now

        # Spend: the day's cost on the page equals the JSON figure and /metrics carries it.
        spend = http.get(f"/projects/{project.id}/spend").json()
        assert spend["today"]["calls"] == 3 and spend["today"]["cost"] > 0
        assert f"${spend['today']['cost']:.6f}" in b.css("#spend-today")[0].text
        b.screenshot("live-quality-and-spend")
        assert b.console_errors() == []
    finally:
        b.close()
    metrics = http.get("/metrics").text
    uid = quality()["project"]
    assert re.search(
        rf'lsml_project_spend_today{{profile="default",project="{re.escape(uid)}",role="labeller"}} \S+', metrics
    )
    assert f'lsml_live_annotations{{model_version="{version}",project="{uid}"}} 3.0' in metrics

    # A daily limit below today's spend, set in the model's Extra params, stops serving the project.
    labelstudio.set_extra_params(ml.id, project.id, backend.url, {"daily_spend_limit": 0.000001}, basic_auth=AUTH)
    new_ids = import_tasks(labelstudio, project.id, ["billing again", "cancellation again"])
    labelstudio.retrieve_predictions(project.id, new_ids)
    assert [labelstudio.predictions(t) for t in new_ids] == [[], []]
    assert f'lsml_prediction_failures_total{{project="{uid}",reason="budget"}} 2.0' in http.get("/metrics").text
    assert http.get(f"/projects/{project.id}/spend").json()["over_limit"] is True


def label_counts(http: httpx.Client, project: int, label: str) -> dict:
    report = http.get(f"/projects/{project}/quality").json()
    controls = report["versions"][0]["controls"]
    rows = [r for c in controls if c["name"] == "intent" for r in c["labels"] if r["label"] == label]
    return rows[0] if rows else {}


def import_tasks(labelstudio, project: int, texts: list[str]) -> list[int]:
    before = {t.id for t in labelstudio.client.tasks.list(project=project)}
    labelstudio.client.projects.import_tasks(id=project, request=[{"data": {"text": t}} for t in texts],
                                             commit_to_project=True)  # fmt: skip
    return sorted({t.id for t in labelstudio.client.tasks.list(project=project)} - before)
