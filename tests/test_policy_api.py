"""The policy history API over HTTP (Flask test client, real Redis) and the same operations through the CLI."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from optimizer.runtime.versions import policy_version
from optimizer.serving.policy import Demo, Policy
from testkit.constants import SUPPORT_CONFIG
from testkit.lspayloads import uid

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret-pass").decode()}
PROJECT = uid(4)


@pytest.fixture
def api(make_settings, namespace):
    from _wsgi import create_app

    settings = make_settings(rq_queue=namespace, basic_auth_user="admin", basic_auth_pass="s3cret-pass")
    app = create_app(settings)
    services = app.extensions["services"]
    client = app.test_client()
    # Label Studio's /setup registers the project (uid, alias, config) and its default policy.
    setup = client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}, headers=AUTH)
    assert setup.status_code == 200
    default = services.store.current(PROJECT)
    v2 = Policy(default.instruction + "\nGreetings are Greeting.", meta={"val_score": 0.7})
    v3 = Policy(v2.instruction, demos=(Demo("hello", {"intent": ["Greeting"]}),), meta={"val_score": 0.8})
    assert services.store.promote(PROJECT, v2, default.version, job="train-a", source="train").ok
    assert services.store.promote(PROJECT, v3, v2.version, job="train-b", source="train").ok
    return SimpleNamespace(client=client, services=services, settings=settings, default=default, v2=v2, v3=v3)


def get(client, path):
    return client.get(path, headers=AUTH)


def post(client, path, body=None):
    data = json.dumps(body) if body is not None else None
    return client.post(path, data=data, headers={**AUTH, "Content-Type": "application/json"})


def test_every_route_needs_auth(api):
    for path in ("/projects/4/policies", "/projects/4/diff", "/jobs/train-x", "/projects/4/events"):
        assert api.client.get(path).status_code == 401
    assert api.client.post("/projects/4/rollback", json={"version": "pv-x"}).status_code == 401


def test_list_by_numeric_id_or_uid(api):
    by_id = get(api.client, "/projects/4/policies").get_json()
    by_uid = get(api.client, f"/projects/{PROJECT}/policies").get_json()
    assert by_id["policies"] == by_uid["policies"]
    assert by_id["live"] == api.v3.version and by_id["pinned"] is None
    assert [p["version"] for p in by_id["policies"]] == [api.v3.version, api.v2.version, api.default.version]
    assert by_id["policies"][0]["job"] == "train-b" and by_id["policies"][0]["val_score"] == 0.8
    versions = get(api.client, "/versions?project=4").get_json()
    assert [policy_version(v) for v in versions["versions"]] == [api.v3.version, api.v2.version, api.default.version]


def test_show_and_diff(api):
    shown = get(api.client, f"/projects/4/policies/{api.v2.version}").get_json()
    assert shown["policy"]["instruction"] == api.v2.instruction and shown["parent"] == api.default.version
    diff = get(api.client, f"/projects/4/diff?from={api.default.version}&to={api.v2.version}").get_json()
    assert "+Greetings are Greeting.\n" in diff["instruction_diff"]
    # Default: live against its parent.
    live = get(api.client, "/projects/4/diff").get_json()
    assert live["from"] == api.v2.version and live["to"] == api.v3.version
    assert live["demos_added"] == [{"input": "hello", "output": {"intent": ["Greeting"]}}]


def test_rollback_then_setup_serves_the_old_version(api):
    answer = post(api.client, "/projects/4/rollback", {"version": api.v2.version})
    assert answer.status_code == 200 and answer.get_json()["live"] == api.v2.version
    setup = api.client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}, headers=AUTH)
    assert policy_version(setup.get_json()["model_version"]) == api.v2.version
    listing = get(api.client, "/projects/4/policies").get_json()
    assert listing["live"] == api.v2.version
    entry = next(p for p in listing["policies"] if p["version"] == api.v2.version)
    assert len(entry["promoted_at"]) == 2  # promoted by training, then again by the rollback


def test_rollback_conflict_and_bad_input(api):
    stale = post(api.client, "/projects/4/rollback", {"version": api.default.version, "expected": api.v2.version})
    assert stale.status_code == 409 and "changed" in stale.get_json()["error"]
    assert post(api.client, "/projects/4/rollback", {"version": "pv-000000000000"}).status_code == 404
    assert post(api.client, "/projects/4/rollback", {}).status_code == 400
    assert post(api.client, "/projects/4/rollback", {"version": 3}).status_code == 400
    assert post(api.client, "/projects/4/rollback", {"version": api.v2.version, "pin": "yes"}).status_code == 400
    assert api.client.post("/projects/4/rollback", data="{", headers=AUTH).status_code == 400
    assert get(api.client, "/projects/99/policies").status_code == 404
    assert get(api.client, "/projects/bad$id/policies").status_code == 400
    assert get(api.client, "/projects/4/policies/pv-000000000000").status_code == 404
    assert get(api.client, "/projects/4/diff?from=pv-x&to=pv-y").status_code == 404
    assert get(api.client, "/projects/4/events?limit=0").status_code == 400


def test_pin_blocks_automatic_promotion_until_unpinned(api):
    pinned = post(api.client, "/projects/4/pin").get_json()
    assert pinned["pinned"] and pinned["live"] == api.v3.version
    candidate = Policy("A trained rewrite.")
    assert api.services.store.promote(PROJECT, candidate, api.v3.version, job="train-c").status == "pinned"
    assert get(api.client, "/projects/4/policies").get_json()["pinned"]["version"] == api.v3.version
    assert post(api.client, "/projects/4/unpin").get_json()["status"] == "unpinned"
    assert api.services.store.promote(PROJECT, candidate, api.v3.version, job="train-c").ok


def test_pin_a_version_rolls_back_to_it(api):
    answer = post(api.client, "/projects/4/pin", {"version": api.default.version}).get_json()
    assert answer["live"] == api.default.version and answer["pinned"]
    assert api.services.store.current(PROJECT).version == api.default.version


def test_train_and_job_status(api):
    queued = post(api.client, "/projects/4/train")
    assert queued.status_code == 202
    job_id = queued.get_json()["job"]
    view = get(api.client, f"/jobs/{job_id}").get_json()
    assert view["status"] == "queued" and view["project"] == PROJECT and view["kind"] == "train"
    assert get(api.client, "/jobs/train-doesnotexist").status_code == 404
    assert get(api.client, "/jobs/bad.id").status_code == 400


@pytest.fixture
def cli(api, monkeypatch, capsys):
    """``python -m optimizer policies ...`` in-process, configured through the environment like the real command."""
    from optimizer.cli.main import main

    monkeypatch.setenv("REDIS_URL", api.settings.redis_url)
    monkeypatch.setenv("REDIS_NAMESPACE", api.settings.redis_namespace)
    monkeypatch.setenv("DEFAULT_PROMPT", api.settings.default_prompt)

    def run(*args) -> SimpleNamespace:
        code = main(["policies", *args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_cli_list_diff_rollback_pin(api, cli):
    listing = cli("list", "--project", "4")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == f"project {PROJECT}" and lines[1].startswith(f"* {api.v3.version}")
    as_json = json.loads(cli("list", "--project", "4", "--json").stdout)
    assert [p["version"] for p in as_json["policies"]] == [api.v3.version, api.v2.version, api.default.version]
    diff = json.loads(cli("diff", "--project", "4").stdout)
    assert diff["demos_added"] and diff["to"] == api.v3.version
    rolled = cli("rollback", "--project", "4", "--version", api.v2.version, "--pin")
    assert rolled.returncode == 0 and json.loads(rolled.stdout)["pinned"] is True
    assert api.services.store.current(PROJECT).version == api.v2.version
    assert cli("unpin", "--project", "4").returncode == 0
    missing = cli("show", "--project", "4", "--version", "pv-000000000000")
    assert missing.returncode == 2 and "no policy version" in missing.stderr


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"version":' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}", "body"),
        (b'{"version": NaN}', "body"),
        (b'{"version": "\\ud800"}', "version"),
        (b"\xff{}", "body"),
        (b"[1]", "body"),
    ],
)
def test_both_surfaces_share_one_parser_and_one_error_shape(api, body, field):
    """The body that answered 500 on rollback (3,000 nested objects) and its kin get the protocol routes' 400."""
    for path in ("/projects/4/rollback", "/predict"):
        response = api.client.post(path, data=body, headers={**AUTH, "Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.get_data(as_text=True)[:200])
        shape = response.get_json()
        assert set(shape) == {"error", "status", "field", "request_id"} and shape["field"] == field
        assert shape["request_id"] == response.headers["X-Request-ID"]


def test_domain_errors_map_to_statuses_with_fields(api):
    unknown = post(api.client, "/projects/4/rollback", {"version": "pv-000000000000"}).get_json()
    assert unknown["status"] == 404 and "no policy version" in unknown["error"]
    missing = get(api.client, "/projects/99/policies").get_json()
    assert missing["status"] == 404 and missing["field"] == "project"
    assert get(api.client, "/jobs/nope").get_json()["field"] == "job"
