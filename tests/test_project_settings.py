"""Per-project LLM settings: Extra params validated at /setup, stored once, used by /predict, training and webhooks.

Two scripted OpenAI-compatible servers stand for two endpoints; the server's ``LLM_PROFILES`` names the second one.
Every assertion is on where requests went (each scripted server records the model name it was asked for), what the
API shows, and what a bad Extra params gets back.
"""

from __future__ import annotations

import json

import pytest

from _wsgi import create_app
from optimizer.jobs.training import train_project
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.project_settings import ProjectSettingsError, effective, parse_choices
from optimizer.runtime.services import Services
from testkit.constants import SUPPORT_CONFIG, THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM, keyword_responder
from testkit.fakels import FakeLabelStudio
from testkit.lspayloads import uid
from testkit.training_stack import gold_tasks, magic_responder

SECRET = "sk-profile-secret-0123456789"
SCHEMA = parse_label_config(THREE_CONTROLS_CONFIG)


@pytest.fixture
def strong():
    with FakeLLM(keyword_responder) as fake:
        yield fake


@pytest.fixture
def profiled(make_settings, strong):
    def build(**overrides):
        profiles = {"strong": {"base_url": strong.base_url, "model": "strong-model", "api_key": SECRET,
                               "concurrency": 3}}  # fmt: skip
        return make_settings(llm_profiles=profiles, **overrides)

    return build


def models(fake: FakeLLM) -> set[str]:
    return {body.get("model") for body in fake.requests}


# --- validation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"profile": "gpt-9"}, "extra_params.profile", "no profile named 'gpt-9'"),
        ({"base_url": "http://169.254.169.254/latest"}, "extra_params.base_url", "not the endpoint of any LLM profile"),
        ({"api_key": "sk-x"}, "extra_params.api_key", "secrets live on the backend server"),
        ({"openai_token": "x"}, "extra_params.openai_token", "looks like a secret"),
        ({"colour": "blue"}, "extra_params.colour", "not a setting a project can choose"),
        ({"temperature": 3}, "extra_params.temperature", "less than or equal to 2"),
        ({"budget": 0}, "extra_params.budget", "greater than or equal to 1"),
        ({"model": "gpt 4; rm -rf"}, "extra_params.model", "should match pattern"),
        ({"verifiers": {"sentiment": "fuzzy"}}, "extra_params.verifiers.sentiment", "unknown verifier"),
        ({"verifiers": {"nope": "exact"}}, "extra_params.verifiers.nope", "has no control 'nope'"),
        ({"verifiers": {"sentiment": "regex:(unclosed"}}, "extra_params.verifiers.sentiment", "RE2 can run"),
        ({"verifiers": {"sentiment": r"regex:(a+)\1"}}, "extra_params.verifiers.sentiment", "backreferences"),
        ({"verifiers": {"sentiment": "regex:" + "a" * 501}}, "extra_params.verifiers.sentiment", "at most 500"),
        ({"verifiers": {"sentiment": "numeric:abc"}}, "extra_params.verifiers.sentiment", "could not convert"),
        # Keys no one can write as a dotted name (the fuzz suite's empty key): the path quotes them, the message too.
        ({"": 1}, 'extra_params[""]', 'extra_params[""]: "" is not a setting'),
        ({"a b": 1}, 'extra_params["a b"]', 'extra_params["a b"]: "a b" is not a setting'),
        # ... at any depth (make fuzz sent {"verifiers": {"": null}}: the message named only 'verifiers[""]').
        ({"verifiers": {"": None}}, 'extra_params.verifiers[""]', 'extra_params.verifiers[""]: '),
        ({"verifiers": {"a b": 7}}, 'extra_params.verifiers["a b"]', 'extra_params.verifiers["a b"]: '),
        ({"verifiers": {"a b": "exact"}}, 'extra_params.verifiers["a b"]', "has no control 'a b'"),
    ],
)
def test_every_key_is_checked_and_named(profiled, extra, field, words):
    with pytest.raises(ProjectSettingsError) as info:
        parse_choices(extra, profiled(), SCHEMA)
    assert info.value.field.startswith(field) and words in info.value.message
    assert "169.254" not in info.value.message  # a refused URL is never echoed


def test_a_profile_base_url_selects_that_profile_and_knobs_override_it(profiled, strong):
    settings = profiled()
    choices = parse_choices({"base_url": strong.base_url + "/", "model": "strong-mini", "temperature": 0.3,
                             "budget": 40, "verifiers": {"sentiment": "accuracy"}}, settings, SCHEMA)  # fmt: skip
    chosen = effective(settings, choices)
    assert chosen.profile == "strong" and chosen.labeller_config.base_url == strong.base_url
    assert (chosen.labeller_config.model, chosen.labeller_config.temperature, chosen.labeller_config.concurrency) == (
        "strong-mini",
        0.3,
        3,
    )
    assert chosen.labeller_config.api_key == SECRET and chosen.budget == 40 and set(chosen.verifiers()) == {"sentiment"}
    public = json.dumps(chosen.public())
    assert SECRET not in public and '"profile": "strong"' in public
    assert parse_choices(None, settings, SCHEMA) is None and parse_choices({}, settings, SCHEMA) is None
    assert effective(settings, None).labeller_config == settings.labeller_config()


def test_bad_profiles_stop_the_process_naming_the_entry(monkeypatch, capsys):
    from optimizer.settings import load_settings

    monkeypatch.setenv("LLM_PROFILES", json.dumps({"x": {"base_url": "file:///etc/passwd", "model": "m"}}))
    with pytest.raises(SystemExit) as stopped:
        load_settings(_env_file=None)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == "configuration error: LLM_PROFILES.x.base_url: must be an http(s):// URL"


# --- over HTTP -----------------------------------------------------------------------------------------------------


def setup(client, project: str, extra, config: str = THREE_CONTROLS_CONFIG):
    return client.post("/setup", json={"project": project, "schema": config, "extra_params": extra})


def predict(client, project: str, text: str):
    body = {"project": project, "label_config": THREE_CONTROLS_CONFIG, "tasks": [{"id": 1, "data": {"text": text}}]}
    return client.post("/predict", json=body)


def test_each_project_reaches_its_own_endpoint_and_the_api_shows_it(profiled, fake_llm, strong, caplog):
    client = create_app(profiled()).test_client()
    assert setup(client, "1.100", None).status_code == 200
    assert setup(client, "2.200", {"profile": "strong", "temperature": 0.2, "retrain_every": 3}).status_code == 200

    assert predict(client, "1.100", "billing please").status_code == 200
    assert predict(client, "2.200", "shipping please").status_code == 200
    assert models(fake_llm) == {"fake"} and "billing please" in json.dumps(fake_llm.requests)
    assert models(strong) == {"strong-model"} and "shipping please" in json.dumps(strong.requests)
    assert strong.requests[0]["temperature"] == 0.2
    assert strong.headers[0].get("authorization") == f"Bearer {SECRET}"  # the key goes to its endpoint only

    shown = client.get("/projects/2/settings")
    assert shown.status_code == 200
    body = shown.get_json()
    assert (body["profile"], body["llm"]["model"], body["retrain_every"]) == ("strong", "strong-model", 3)
    assert SECRET not in shown.get_data(as_text=True)
    assert client.get("/projects/1/settings").get_json()["profile"] == "default"
    rows = {r["project"]: r["settings"] for r in client.get("/projects").get_json()["projects"]}
    assert rows["2.200"]["profile"] == "strong" and rows["1.100"]["profile"] == "default"
    page = client.get("/dashboard").get_data(as_text=True)
    assert "strong-model" in page and SECRET not in page
    project_page = client.get("/dashboard/projects/2.200").get_data(as_text=True)
    assert "profile <strong>strong</strong>" in project_page and "retrain every 3" in project_page
    assert SECRET not in project_page

    # Emptying Extra params in Label Studio (it then sends null) returns the project to the defaults.
    assert setup(client, "2.200", None).status_code == 200
    assert predict(client, "2.200", "returns").status_code == 200
    assert models(fake_llm) == {"fake"} and len(strong.requests) == 1
    assert SECRET not in caplog.text


def test_bad_extra_params_get_a_400_naming_the_key_and_nothing_is_stored(profiled, strong):
    client = create_app(profiled()).test_client()
    refused = setup(client, "3.300", {"base_url": "http://10.0.0.1:8080/v1"})
    assert refused.status_code == 400
    assert refused.get_json()["field"] == "extra_params.base_url" and "LLM_PROFILES" in refused.get_json()["error"]
    assert setup(client, "3.300", {"profile": "strong"}).status_code == 200
    assert setup(client, "3.300", {"profile": "strong", "api_key": "sk-mine"}).status_code == 400
    assert client.get("/projects/3/settings").get_json()["profile"] == "strong"  # the refused call changed nothing


@pytest.mark.parametrize(
    ("pattern", "words"),
    [("(?=lookahead)x", "RE2 can run"), ("x" * 501, "at most 500 characters")],
    ids=["not-re2", "too-long"],
)
def test_a_regex_verifier_re2_refuses_is_a_400_naming_the_control(profiled, pattern, words):
    """The worker runs a project's pattern on every gold item: one it cannot run in linear time never gets stored."""
    client = create_app(profiled()).test_client()
    refused = setup(client, "7.700", {"verifiers": {"sentiment": "regex:" + pattern}})
    assert refused.status_code == 400, refused.get_json()
    body = refused.get_json()
    assert body["field"] == "extra_params.verifiers.sentiment" and words in body["error"], body
    assert client.get("/projects/7/settings").get_json()["verifiers"] == {}  # nothing was stored
    assert setup(client, "7.700", {"verifiers": {"sentiment": r"regex:(a+)+$"}}).status_code == 200  # RE2 runs it
    assert client.get("/projects/7/settings").get_json()["verifiers"] == {"sentiment": r"regex:(a+)+$"}


def test_a_removed_profile_is_a_409_that_says_what_to_do(profiled, make_settings, redis_server, namespace):
    client = create_app(profiled()).test_client()
    assert setup(client, "4.400", {"profile": "strong"}).status_code == 200
    without = create_app(make_settings()).test_client()  # the operator removed LLM_PROFILES
    answer = predict(without, "4.400", "billing")
    assert answer.status_code == 409 and "no longer in LLM_PROFILES" in answer.get_json()["error"]


def test_webhooks_use_the_project_retrain_threshold(profiled):
    client = create_app(profiled(retrain_every_n=50)).test_client()
    assert setup(client, "5.500", {"retrain_every": 2}).status_code == 200
    hook = {"action": "ANNOTATION_CREATED", "project": {"id": 5, "created_at": "1970-01-01T00:08:20Z"},
            "annotation": {"id": 1}, "task": {"id": 1}}  # fmt: skip
    answer = client.post("/webhook", json=hook).get_json()
    assert answer.get("retrain_every_n") == 2, answer


def test_training_uses_the_same_profile_budget_and_verifiers(profiled, strong):
    strong.responder = magic_responder
    with FakeLabelStudio(SUPPORT_CONFIG, gold_tasks()) as ls, FakeLLM(magic_responder) as default:
        settings = profiled(llm_base_url=default.base_url, label_studio_url=ls.url, label_studio_api_key=ls.token)
        services = Services(settings)
        project = uid(1)
        client = create_app(settings, services).test_client()
        extra = {"profile": "strong", "budget": 30, "verifiers": {"intent": "set_f1"}}
        assert setup(client, project, extra, SUPPORT_CONFIG).status_code == 200
        summary = train_project(services, project, "train-settings", lambda **f: None).to_dict()
    assert summary["settings"]["profile"] == "strong" and summary["settings"]["verifiers"] == {"intent": "set_f1"}
    assert summary["calls"] <= 30
    labeller_calls = [b for b in strong.requests if '"intent"' in json.dumps(b.get("response_format") or {})]
    assert labeller_calls and models(strong) == {"strong-model"}
    # The default endpoint only served the proposer (OPTIMIZER_* falls back to LLM_*), never a labelling call.
    assert all(not b.get("response_format") for b in default.requests)


def test_the_cli_shows_the_same_settings(profiled, strong, monkeypatch, tmp_path, capsys, redis_server, namespace):
    from optimizer.cli import main as cli

    client = create_app(profiled()).test_client()
    assert setup(client, "6.600", {"profile": "strong", "budget": 12}).status_code == 200
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("REDIS_NAMESPACE", namespace)
    monkeypatch.setenv("LLM_PROFILES", json.dumps({"strong": {"base_url": strong.base_url, "model": "strong-model",
                                                              "api_key": SECRET}}))  # fmt: skip
    assert cli.main(["policies", "settings", "--project", "6"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert (shown["project"], shown["profile"], shown["budget"]) == ("6.600", "strong", 12)
    assert SECRET not in out
