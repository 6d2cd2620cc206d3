"""The HTTP contract Label Studio relies on: shapes, versions, auth and bad input, through the real app."""

import base64
import json

import pytest

from _wsgi import create_app
from optimizer.runtime.versions import policy_version
from optimizer.serving.policy import Policy
from testkit.constants import SUPPORT_CONFIG, THREE_CONTROLS_CONFIG
from testkit.lspayloads import SAMPLES

RECORDED = SAMPLES  # copied from shared/ls-protocol (LS 1.23.2)
PROJECT = "15.1795300590"


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())["request_json"]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_health_is_open_and_reports_redis(client):
    body = client.get("/health").get_json()
    assert body["status"] == "UP" and body["model_class"] == "PromptPolicyModel" and body["redis"] == "ok"


def test_recorded_setup_and_retrieve_payloads(client):
    setup = client.post("/setup", json=recorded("setup.json"))
    assert setup.status_code == 200
    version = setup.get_json()["model_version"]
    request = recorded("predict.retrieve_predictions.json")
    response = client.post("/predict", json=request)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == len(request["tasks"])
    for result in results:
        assert result["model_version"] == version
        assert 0.0 <= result["score"] <= 1.0
        for item in result["result"]:
            assert item["to_name"] == "chat"
            assert item["type"] in {"choices", "textarea"}


def test_results_are_one_per_task_in_task_order(client, fake_llm):
    tasks = [{"id": i, "data": {"dialogue": [{"author": "C", "text": label}]}} for i, label in
             enumerate(["Billing", "Greeting", "Complaint", "Cancellation", "Other", "Feedback"])]  # fmt: skip
    response = client.post("/predict", json={"tasks": tasks, "label_config": SUPPORT_CONFIG, "project": PROJECT})
    labels = [r["result"][0]["value"]["choices"] for r in response.get_json()["results"]]
    assert labels == [["Billing"], ["Greeting"], ["Complaint"], ["Cancellation"], ["Other"], ["Feedback"]]


def test_version_changes_exactly_when_the_policy_changes(client, app):
    store = app.extensions["services"].store
    first = client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}).get_json()["model_version"]
    again = client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}).get_json()["model_version"]
    assert first == again
    task = {"tasks": [{"data": {"dialogue": []}}], "label_config": SUPPORT_CONFIG, "project": PROJECT}
    assert client.post("/predict", json=task).get_json()["results"][0]["model_version"] == first
    assert store.promote(PROJECT, Policy("A better prompt."), parent=policy_version(first)).ok
    second = client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}).get_json()["model_version"]
    assert second != first
    assert client.post("/predict", json=task).get_json()["results"][0]["model_version"] == second
    other = client.post("/setup", json={"project": "16.1", "schema": SUPPORT_CONFIG}).get_json()["model_version"]
    assert other == first  # another project keeps its own (default) policy


def test_interactive_prompt_is_used_and_echoed(client, fake_llm):
    request = recorded("predict.interactive_annotating.json")
    response = client.post("/predict", json=request).get_json()
    assert "Say hello" in fake_llm.requests[-1]["messages"][0]["content"]
    echoed = [i for i in response["results"][0]["result"] if i["from_name"] == "prompt"]
    assert echoed and echoed[0]["value"]["text"] == ["Say hello"]


@pytest.mark.parametrize(
    "kwargs, field, message",
    [
        ({"data": "not json"}, "body", "not valid JSON"),
        ({"json": [1, 2]}, "body", "JSON object"),
        ({"json": {"label_config": SUPPORT_CONFIG}}, "tasks", '"tasks" is required'),
        ({"json": {"tasks": {"a": 1}, "label_config": SUPPORT_CONFIG}}, "tasks", "valid list"),
        ({"json": {"tasks": [1], "label_config": SUPPORT_CONFIG}}, "tasks[0]", "tasks[0]"),
        ({"json": {"tasks": [{"id": 1}], "label_config": SUPPORT_CONFIG}}, "tasks[0].data", "is required"),
        ({"json": {"tasks": [{"data": {}}]}}, "label_config", "label_config"),
        ({"json": {"tasks": [{"data": {}}], "label_config": "<View><Choices"}}, "label_config", "not valid XML"),
        ({"json": {"tasks": [{"data": {}}], "label_config": 5}}, "label_config", "valid string"),
        ({"json": {"tasks": [], "label_config": SUPPORT_CONFIG, "params": []}}, "params", "params"),
        ({"data": b""}, "body", "empty"),
        # Each of these answered 500 before the validation layer (issue #11).
        ({"json": {"tasks": [{"data": {}}], "params": {"context": {"result": 5}}}}, "params.context.result", "list"),
        (
            {"json": {"tasks": [{"data": {}}], "params": {"context": {"result": [{"from_name": "p", "value": [1]}]}}}},
            "params.context.result[0].value",
            "dictionary",
        ),
        ({"data": b'{"tasks": [], "x": NaN}'}, "body", "NaN"),
        ({"data": b'{"tasks": [], "x": 1e999}'}, "body", "out of range"),
        ({"data": b'{"tasks": [], "x": ' + b"9" * 5000 + b"}"}, "body", "not valid JSON"),
        ({"data": b'{"tasks": [], "x": "\\ud800"}'}, "x", "surrogate"),
        ({"data": b'{"tasks": [], "x": "\xff\xfe"}'}, "body", "UTF-8"),
        ({"data": b'{"tasks": [], "x": ' + b"[" * 100 + b"]" * 100 + b"}"}, "x" + "[0]" * 63, "nested"),
        ({"data": b'{"tasks": [], "x": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}"}, "body", "nested"),
    ],
)
def test_bad_predict_input_is_a_clear_4xx(client, kwargs, field, message):
    response = client.post("/predict", **kwargs)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert message in body["error"] and body["field"] == field and body["request_id"]


def test_bad_setup_and_webhook_input(client):
    assert client.post("/setup", json={"project": "1"}).status_code == 400
    bad = client.post("/setup", json={"schema": '<View><Text name="t" value="$t"/></View>'})
    assert bad.status_code == 400 and "no control for the model to fill" in bad.get_json()["error"]
    assert client.post("/webhook", json={"project": {"id": 1}}).status_code == 400


def test_body_over_the_limit_is_413(make_settings):
    client = create_app(make_settings(max_body_bytes=2048)).test_client()
    response = client.post("/predict", json={"tasks": [{"data": {"text": "x" * 5000}}]})
    assert response.status_code == 413 and "limit" in response.get_json()["error"]


def test_empty_task_list_is_an_empty_answer(client, fake_llm):
    response = client.post("/predict", json={"tasks": [], "label_config": SUPPORT_CONFIG})
    assert response.get_json()["results"] == [] and fake_llm.requests == []


def test_task_missing_its_field_gets_no_prediction_alone(client):
    tasks = [{"data": {"text": "billing"}}, {"data": {"other": 1}}]
    results = client.post("/predict", json={"tasks": tasks, "label_config": THREE_CONTROLS_CONFIG}).get_json()
    assert results["results"][0]["result"] and results["results"][1] == []


@pytest.mark.parametrize("action", ["START_TRAINING", "ANNOTATION_CREATED", "ANNOTATIONS_DELETED", "SOMETHING_NEW"])
def test_webhook_acknowledges_every_action(client, action):
    response = client.post("/webhook", json={"action": action, "project": {"id": 1}})
    assert response.status_code == 201 and response.get_json()["action"] == action


class TestBasicAuth:
    @pytest.fixture
    def secured(self, make_settings):
        settings = make_settings(basic_auth_user="ls", basic_auth_pass="s3cret-pass", webhook_secret="hook-secret")
        return create_app(settings).test_client()

    def test_health_stays_open(self, secured):
        assert secured.get("/health").status_code == 200

    @pytest.mark.parametrize("path", ["/", "/versions"])
    def test_get_routes_need_auth(self, secured, path):
        assert secured.get(path).status_code == 401
        assert secured.get(path, headers=basic("ls", "s3cret-pass")).status_code == 200

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            basic("ls", "wrong"),
            basic("other", "s3cret-pass"),
            basic("ls", "s3cret-pass-longer"),
            {"Authorization": "Basic !!!not-base64"},
            {"Authorization": "Bearer s3cret-pass"},
        ],
    )
    def test_wrong_credentials_are_refused(self, secured, headers):
        response = secured.post("/setup", json={"schema": SUPPORT_CONFIG}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert "s3cret" not in response.get_data(as_text=True)

    def test_right_credentials_pass(self, secured):
        response = secured.post("/setup", json={"schema": SUPPORT_CONFIG}, headers=basic("ls", "s3cret-pass"))
        assert response.status_code == 200

    def test_webhook_accepts_the_shared_secret_only_on_webhook(self, secured):
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 1}}
        assert secured.post("/webhook", json=event).status_code == 401
        assert secured.post("/webhook", json=event, headers={"X-Webhook-Secret": "nope"}).status_code == 401
        assert secured.post("/webhook", json=event, headers={"X-Webhook-Secret": "hook-secret"}).status_code == 201
        setup = secured.post("/setup", json={"schema": SUPPORT_CONFIG}, headers={"X-Webhook-Secret": "hook-secret"})
        assert setup.status_code == 401


def test_health_never_shows_credentials_in_the_llm_url(make_settings, fake_llm):
    url = fake_llm.base_url.replace("http://", "http://user:hunter2-secret@")
    body = create_app(make_settings(llm_base_url=url)).test_client().get("/health").get_json()
    assert "hunter2" not in str(body) and body["llm_base_url"] == fake_llm.base_url


class TestSafeDefaultsWithoutBasicAuth:
    """No BASIC_AUTH_USER: Label Studio's own routes stay open, but nothing that changes what is served is."""

    def test_writes_are_refused_unless_allowed_in_so_many_words(self, make_settings):
        closed = create_app(make_settings()).test_client()
        closed.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG})
        for path in (f"/projects/{PROJECT}/rollback", f"/projects/{PROJECT}/pin", f"/projects/{PROJECT}/train"):
            answer = closed.post(path, json={"version": "pv-000000000000"})
            body = answer.get_json()
            assert answer.status_code == 403 and "ALLOW_ANONYMOUS_WRITES=1" in body["error"], path
            assert body["field"] == "Authorization"
        assert closed.get(f"/projects/{PROJECT}/policies").status_code == 200  # reading stays open
        assert closed.post("/predict", json={"tasks": [], "label_config": SUPPORT_CONFIG}).status_code == 200
        opened = create_app(make_settings(allow_anonymous_writes=True)).test_client()
        assert opened.post(f"/projects/{PROJECT}/pin", json={}).status_code == 200

    def test_a_webhook_secret_alone_protects_the_webhook(self, make_settings):
        client = create_app(make_settings(webhook_secret="hook-secret")).test_client()
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 1}}
        refused = client.post("/webhook", json=event)
        assert refused.status_code == 401 and refused.get_json()["field"] == "X-Webhook-Secret"
        assert client.post("/webhook", json=event, headers={"X-Webhook-Secret": "nope"}).status_code == 401
        assert client.post("/webhook", json=event, headers={"X-Webhook-Secret": "hook-secret"}).status_code == 201
        assert client.post("/setup", json={"schema": SUPPORT_CONFIG}).status_code == 200  # LS's own calls stay open


@pytest.mark.parametrize(
    "overrides, host, warned",
    [
        ({}, "0.0.0.0", True),
        ({}, "127.0.0.1", False),
        ({}, "[::1]", False),
        ({}, "localhost", False),
        ({"basic_auth_user": "u", "basic_auth_pass": "p"}, "0.0.0.0", False),
        ({"allow_anonymous_writes": True}, "10.0.0.5", True),
        ({"allow_anonymous_export": True}, "10.0.0.5", True),
    ],
)
def test_one_warning_line_when_serving_the_network_without_auth(make_settings, overrides, host, warned):
    from optimizer.exposure import exposure_warning

    line = exposure_warning(make_settings(**overrides), host)
    assert (line is not None) == warned
    if line:
        assert "\n" not in line and "BASIC_AUTH_USER" in line and host in line
        assert ("anyone may roll back" in line) == bool(overrides.get("allow_anonymous_writes"))
        assert ("ALLOW_ANONYMOUS_EXPORT=1" in line) == bool(overrides.get("allow_anonymous_export"))


@pytest.mark.parametrize("opened", [False, True])
def test_a_protected_read_is_refused_anonymously_unless_opened_and_names_its_opt_in(opened):
    """The protocol layer guards reads by the product's URL rules, knowing nothing of what they serve."""
    from ls_protocol import LabelStudioMLBase, ProtectedRead
    from ls_protocol import create_app as protocol_app

    app = protocol_app(LabelStudioMLBase, protected_reads=[ProtectedRead(frozenset({"/things/<ref>"}), "OPEN_IT=1",
                                                                         opened)])  # fmt: skip
    app.add_url_rule("/things/<ref>", "thing", lambda ref: {"ref": ref})
    app.add_url_rule("/other/<ref>", "other", lambda ref: {"ref": ref})
    client = app.test_client()
    answer = client.get("/things/1")
    if opened:
        assert answer.status_code == 200 and answer.get_json() == {"ref": "1"}
    else:
        assert answer.status_code == 403 and "OPEN_IT=1" in answer.get_json()["error"]
        assert answer.get_json()["field"] == "Authorization"
    assert client.get("/other/1").status_code == 200  # an unguarded read stays open


def test_the_basic_auth_scheme_is_case_insensitive_and_the_credentials_are_not():
    from ls_protocol import BasicAuth

    auth = BasicAuth("admin", "s3cret")
    token = base64.b64encode(b"admin:s3cret").decode()
    assert all(auth.check(f"{scheme} {token}") for scheme in ("Basic", "basic", "BASIC", " Basic"))
    wrong = base64.b64encode(b"admin:S3cret").decode()
    assert not any(auth.check(h) for h in (f"Basic {wrong}", f"Bearer {token}", "Basic", "Basic ", None, token))
