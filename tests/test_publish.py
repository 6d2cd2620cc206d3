"""Publishing a policy written by hand: over the API, from the CLI's own output folder, and from the dashboard.

A published policy is checked like a proposal (length cap, the label set, no secrets), becomes a version in the
history with its source (``manual``, ``cli``), and goes live only when asked, as a compare-and-set on the live
version the publisher saw. Live, it is what the next ``/predict`` serves.
"""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace

import pytest

from optimizer.runtime.versions import policy_version
from optimizer.serving.policy import Demo, Policy
from testkit.constants import SUPPORT_CONFIG
from testkit.lspayloads import uid

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret-pass").decode()}
JSON = {**AUTH, "Content-Type": "application/json"}
PROJECT = uid(31)
LLM_KEY = "sk-test-0123456789abcdefghij"


@pytest.fixture
def api(make_settings):
    from _wsgi import create_app

    settings = make_settings(basic_auth_user="admin", basic_auth_pass="s3cret-pass", llm_api_key=LLM_KEY)
    app = create_app(settings)
    client = app.test_client()
    assert client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}, headers=AUTH).status_code == 200
    return SimpleNamespace(client=client, services=app.extensions["services"], settings=settings)


def publish(api, body: dict, project: str = "31"):
    return api.client.post(f"/projects/{project}/policies", data=json.dumps(body), headers=JSON)


def served_policy(api) -> str:
    setup = api.client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}, headers=AUTH)
    return policy_version(setup.get_json()["model_version"])


def test_published_stays_in_history_until_asked_to_go_live(api):
    before = api.services.store.current_version(PROJECT)
    demo = {"input": "hello there", "output": {"intent": ["Greeting"]}}
    kept = publish(api, {"instruction": "Label greetings carefully.", "demos": [demo], "demo_k": 1})
    assert kept.status_code == 201, kept.get_json()
    version = kept.get_json()["version"]
    expected = Policy("Label greetings carefully.", (Demo("hello there", {"intent": ["Greeting"]}),), demo_k=1)
    assert version == expected.version and kept.get_json()["status"] == "published"
    assert served_policy(api) == before  # not live: nothing served changes
    listing = api.client.get("/projects/31/policies", headers=AUTH).get_json()
    entry = next(p for p in listing["policies"] if p["version"] == version)
    assert entry["source"] == "manual" and entry["status"] == "published" and not entry["live"]

    live = publish(api, {"instruction": "Label greetings carefully.", "demos": [demo], "demo_k": 1, "live": True,
                         "expected": before})  # fmt: skip
    assert live.status_code == 201 and live.get_json()["live"] == version
    assert served_policy(api) == version
    answer = api.client.post(
        "/predict",
        json={
            "tasks": [{"data": {"dialogue": [{"author": "C", "text": "hi"}]}}],
            "label_config": SUPPORT_CONFIG,
            "project": PROJECT,
        },
        headers=AUTH,
    )
    assert policy_version(answer.get_json()["results"][0]["model_version"]) == version  # the next /predict serves it


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"instruction": "x" * 2001}, "instruction", "too long"),
        ({"instruction": "   "}, "instruction", "empty"),
        ({"instruction": f"Use key {LLM_KEY} for lookups."}, "instruction", "secret"),
        ({"instruction": "Use sk-live-ABCDEFGHIJKLMNOPQRSTUV to call."}, "instruction", "secret"),
        ({"instruction": "ok", "demos": [{"input": "hi", "output": {"intent": ["Hello"]}}]},
         "demos[0].output.intent", "not a label"),
        ({"instruction": "ok", "demos": [{"input": "hi", "output": {"mood": "x"}}]}, "demos[0].output", "no control"),
        ({"instruction": "ok", "demos": [{"input": "hi", "output": {"intent": ["Greeting"]}}], "demo_k": 3},
         "demo_k", "more demos"),
        ({"instruction": 7}, "instruction", ""),
    ],
)  # fmt: skip
def test_a_policy_that_is_not_fit_to_serve_is_refused_naming_its_field(api, body, field, words):
    before = api.client.get("/projects/31/policies", headers=AUTH).get_json()["policies"]
    answer = publish(api, body)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["field"] == field and words in answer.get_json()["error"]
    assert LLM_KEY not in answer.get_data(as_text=True)  # the refusal does not echo the secret
    assert api.client.get("/projects/31/policies", headers=AUTH).get_json()["policies"] == before


def test_a_stale_expected_version_is_a_conflict_and_unknown_projects_are_not_found(api):
    answer = publish(api, {"instruction": "New.", "live": True, "expected": "pv-000000000000"})
    assert answer.status_code == 409 and answer.get_json()["field"] == "expected"
    assert publish(api, {"instruction": "New."}, project="999").status_code == 404
    anonymous = api.client.post("/projects/31/policies", json={"instruction": "New."})
    assert anonymous.status_code == 401


def test_the_cli_publishes_the_optimizer_output_folder(api, tmp_path, monkeypatch, capsys):
    from optimizer.cli.main import main

    for name, value in {"REDIS_URL": api.settings.redis_url, "REDIS_NAMESPACE": api.settings.redis_namespace,
                        "DEFAULT_PROMPT": api.settings.default_prompt}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    policy = Policy("From the gold file.", (Demo("my bill is wrong", {"intent": ["Billing"]}),), demo_k=1)
    (tmp_path / "policy.json").write_text(json.dumps(policy.to_dict()))  # what `optimize --out` writes
    code = main(["policies", "publish", "--project", "31", "--from", str(tmp_path), "--live"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["live"] == policy.version and served_policy(api) == policy.version
    entry = next(p for p in api.client.get("/projects/31/policies", headers=AUTH).get_json()["policies"]
                 if p["version"] == policy.version)  # fmt: skip
    assert entry["source"] == "cli" and entry["live"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "policy.json").write_text(json.dumps(Policy("x" * 3000).to_dict()))
    assert main(["policies", "publish", "--project", "31", "--from", str(tmp_path / "bad")]) == 2
    assert '"instruction" is too long' in capsys.readouterr().err and served_policy(api) == policy.version


def test_the_dashboard_form_publishes_an_instruction_keeping_the_live_demos(api):
    live = api.services.store.current(PROJECT)
    with_demos = Policy(live.instruction, (Demo("hi", {"intent": ["Greeting"]}),), demo_k=1)
    assert api.services.store.promote(PROJECT, with_demos, parent=live.version).ok
    page = api.client.get(f"/dashboard/projects/{PROJECT}", headers=AUTH).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)[1]
    form = {"csrf_token": token, "instruction": "Typed on the page.", "live": "1", "expected": with_demos.version}
    done = api.client.post(f"/dashboard/projects/{PROJECT}/publish", data=form, headers=AUTH)
    assert done.status_code == 303 and done.headers["Location"].endswith("notice=published-live")
    now = api.services.store.current(PROJECT)
    assert now.instruction == "Typed on the page." and now.demos == with_demos.demos and now.demo_k == 1
    forged = api.client.post(f"/dashboard/projects/{PROJECT}/publish", data={**form, "csrf_token": "0" * 64},
                             headers=AUTH)  # fmt: skip
    assert forged.status_code == 403 and api.services.store.current(PROJECT).version == now.version
