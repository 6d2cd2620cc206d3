"""A rollback clicked in the dashboard reaches a real Label Studio 1.23.2: its next predictions carry that version.

Label Studio is connected to the backend (gunicorn, basic auth) and retrieves predictions under a promoted version;
a person then opens the project page in headless chromium and clicks "Roll back" on the starting version. What
matters is what Label Studio holds afterwards, read back through the SDK: the model version it took from
``/setup`` and the predictions it stored for tasks retrieved after the click.
"""

from __future__ import annotations

import uuid

import pytest

from optimizer.runtime.services import Services
from optimizer.runtime.versions import policy_version
from optimizer.serving.policy import Policy
from optimizer.settings import Settings
from testkit.constants import SUPPORT_CONFIG
from testkit.processes import wait_for
from tests.support import browser as browser_support
from tests.support.gating import need

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser, pytest.mark.slow]

AUTH = ("dash", "dash-pass-123")


def dialogue(text: str) -> dict:
    return {"dialogue": [{"author": "Customer", "text": text}]}


def test_rollback_clicked_in_the_dashboard_is_what_label_studio_predicts_with(
    labelstudio, start_backend, fake_llm, redis_server
):
    reason = browser_support.missing()
    need(reason is None, reason or "")
    namespace = "dash" + uuid.uuid4().hex[:8]
    backend = start_backend(fake_llm.base_url, basic_auth=AUTH, namespace=namespace)
    services = Services(Settings(_env_file=None, redis_url=redis_server.url, redis_namespace=namespace))

    first = [dialogue(f"I have a billing question #{i}") for i in range(2)]
    later = [dialogue(f"Please cancel my order #{i}") for i in range(2)]
    project, task_ids = labelstudio.create_project(SUPPORT_CONFIG, first + later)
    ml = labelstudio.connect_backend(project.id, backend.url, basic_auth=AUTH)
    uid = services.projects.resolve(str(project.id))
    start = services.store.current(uid)
    promoted = Policy(start.instruction + "\nBilling questions are Billing.", meta={"val_score": 0.9})
    assert services.store.promote(uid, promoted, start.version, job="train-x", source="train").ok

    labelstudio.retrieve_predictions(project.id, task_ids[:2])
    assert policy_version(labelstudio.ml_backend(ml.id)["model_version"]) == promoted.version
    assert {policy_version(p["model_version"]) for t in task_ids[:2] for p in labelstudio.predictions(t)} == {
        promoted.version
    }

    b = browser_support.Browser(*AUTH)
    try:
        b.open(f"{backend.url}/dashboard/projects/{project.id}")
        assert [c.get_attribute("data-version") for c in b.css("li.version-card.live")] == [promoted.version]
        b.css(f'li[data-version="{start.version}"] button.rollback')[0].click()
        wait_for(lambda: b.css("p.notice"), 10, what="the page after the rollback")
        assert [c.get_attribute("data-version") for c in b.css("li.version-card.live")] == [start.version]
        assert b.console_errors() == []
    finally:
        b.close()

    labelstudio.retrieve_predictions(project.id, task_ids[2:])
    assert policy_version(labelstudio.ml_backend(ml.id)["model_version"]) == start.version
    later_predictions = [labelstudio.predictions(t) for t in task_ids[2:]]
    assert all(len(p) == 1 and policy_version(p[0]["model_version"]) == start.version for p in later_predictions), (
        later_predictions
    )
    assert all(p[0]["result"] for p in later_predictions)  # real answers, not placeholders
