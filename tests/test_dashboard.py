"""The dashboard through Flask's test client: pages, JSON twins, CSRF, escaping, against a project trained for real.

The project gets two versions promoted by two real training runs (``testkit.dashboard_seed``); the second
version's instruction carries ``<script>`` markup, which every page must show as text.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from html import unescape
from types import SimpleNamespace

import pytest
from rq import SimpleWorker

from optimizer.jobs.queue import JobQueue
from optimizer.serving.policy import Demo, Policy
from optimizer.settings import Settings
from testkit.constants import SUPPORT_CONFIG
from testkit.dashboard_seed import PROJECT, seed, seed_tasks
from testkit.fakellm import FakeLLM
from testkit.fakels import FakeLabelStudio
from testkit.staged import LEVEL_TWO, StagedResponder

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret-pass").decode()}
OTHER_AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:other-pass").decode()}


@pytest.fixture(scope="module")
def dash(redis_server):
    from _wsgi import create_app

    responder = StagedResponder()
    llm, ls = FakeLLM(responder), FakeLabelStudio(SUPPORT_CONFIG, seed_tasks())
    with llm, ls, pytest.MonkeyPatch.context() as mp:
        namespace = "t" + uuid.uuid4().hex[:10]
        settings = Settings(
            _env_file=None,
            redis_url=redis_server.url,
            redis_namespace=namespace,
            rq_queue=namespace,
            llm_base_url=llm.base_url,
            llm_model="fake",
            llm_provider="auto",
            log_format="text",
            default_prompt="Label the conversation.",
            label_studio_url=ls.url,
            label_studio_api_key=ls.token,
            optimize_budget=400,
            basic_auth_user="admin",
            basic_auth_pass="s3cret-pass",
            llm_price_input_per_1m=0.5,
            llm_price_output_per_1m=1.5,
        )
        app = create_app(settings)
        client = app.test_client()
        setup = client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}, headers=AUTH)
        assert setup.status_code == 200
        seeded = seed(app.extensions["services"], responder, mp)
        yield SimpleNamespace(app=app, client=client, seeded=seeded, settings=settings, ls=ls)


def get(dash, path, headers=AUTH):
    return dash.client.get(path, headers=headers)


def token_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)[1]


def post_form(dash, path, form, headers=None):
    return dash.client.post(path, data=form, headers={**AUTH, **(headers or {})})


def test_every_page_needs_auth(dash):
    for path in ("/dashboard", f"/dashboard/projects/{PROJECT}", f"/dashboard/runs/{dash.seeded.first_job}",
                 "/dashboard/live", "/projects", "/jobs", f"/runs/{dash.seeded.first_job}"):  # fmt: skip
        assert dash.client.get(path).status_code == 401, path


def test_projects_page_matches_its_json_twin(dash):
    twin = get(dash, "/projects").get_json()
    row = next(p for p in twin["projects"] if p["project"] == PROJECT)
    live = dash.seeded.versions[-1]
    assert row["live"] == live and row["pinned"] is False and row["versions"] == 3
    assert row["last_run"]["id"] == dash.seeded.second_job and row["last_run"]["outcome"] == "promoted"
    assert row["val_score"] == 1.0 and row["test_score"] == 1.0
    assert row["label_studio"] == f"{dash.ls.url}/projects/1/data"
    page = get(dash, "/dashboard")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert live in html and dash.seeded.second_job in html and 'href="/projects"' in html
    assert f'href="{dash.ls.url}/projects/1/data"' in html
    scores = row["last_run"]["scores"]  # whether training helped, at a glance: held-out test before → after
    assert scores["initial_test_score"] < scores["test_score"]
    assert f"test {scores['initial_test_score']:.3f} → {scores['test_score']:.3f}" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"] and page.headers["X-Frame-Options"] == "DENY"


def test_predictions_served_and_the_empty_share_come_from_the_metrics_counters(dash):
    tasks = [{"id": 900 + i, "data": {"dialogue": [{"author": "Customer", "text": f"Billing #{i}"}]}} for i in range(3)]
    tasks.append({"id": 999, "data": {"unrelated": "x"}})  # nothing to label: an empty prediction, reason no_input
    before = next(p for p in get(dash, "/projects").get_json()["projects"] if p["project"] == PROJECT)
    answer = dash.client.post(
        "/predict", json={"tasks": tasks, "project": PROJECT, "label_config": SUPPORT_CONFIG}, headers=AUTH
    )
    assert answer.status_code == 200
    row = next(p for p in get(dash, "/projects").get_json()["projects"] if p["project"] == PROJECT)
    assert row["predictions"] - before["predictions"] == 4
    assert row["empty"] - before["empty"] == 1 and row["empty_share"] == round(row["empty"] / row["predictions"], 4)
    metrics = get(dash, "/metrics").get_data(as_text=True)
    served = re.findall(rf'lsml_predictions_total\{{[^}}]*project="{re.escape(PROJECT)}"[^}}]*\}} ([0-9.]+)', metrics)
    assert sum(float(v) for v in served) == row["predictions"]


def test_project_page_shows_versions_diff_and_escapes_the_prompt(dash):
    default, middle, live = dash.seeded.versions
    html = get(dash, f"/dashboard/projects/{PROJECT}").get_data(as_text=True)
    assert "<script>window.__pwned" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;" in html
    # The live marker sits on the live version's card, and only there.
    cards = re.findall(r'<li class="version-card( live)?" id="(pv-[0-9a-f]+)"', html)
    assert [v for _, v in cards] == [live, middle, default]
    assert [v for flag, v in cards if flag] == [live]
    # The diff against the parent shows the added line, marked as added.
    added = re.findall(r'<span class="add">(.*?)</span>', html)
    assert any(LEVEL_TWO in unescape(line) and unescape(line).startswith("+") for line in added), added
    # One rollback button per non-live version, each naming the live version it expects.
    pair = r'name="version" value="(pv-[0-9a-f]+)">\s*<input type="hidden" name="expected" value="(pv-[^"]+)"'
    forms = re.findall(pair, html)
    assert sorted(forms) == sorted([(middle, live), (default, live)])
    # Same data as the policy API.
    twin = get(dash, f"/projects/{PROJECT}/policies").get_json()
    assert [p["version"] for p in twin["policies"]] == [live, middle, default] and twin["live"] == live
    assert f'href="/projects/{PROJECT}/policies"' in html


def test_run_page_has_one_curve_point_per_step_and_the_costs(dash):
    twin = get(dash, f"/runs/{dash.seeded.second_job}").get_json()
    steps = twin["curve"]["steps"]
    assert steps and twin["curve"]["initial_test"] < twin["curve"]["final_test"] == 1.0
    assert any(c["accepted"] for s in steps for c in s["candidates"])
    usage = {row["role"]: row for row in twin["usage"]}
    assert usage["labeller"]["calls"] > 0 and usage["proposer"]["calls"] > 0
    expected = sum((r["prompt_tokens"] * 0.5 + r["completion_tokens"] * 1.5) / 1e6 for r in usage.values())
    assert twin["priced"] and twin["cost"] == pytest.approx(expected, abs=1e-6) and twin["cost"] > 0
    html = get(dash, f"/dashboard/runs/{dash.seeded.second_job}").get_data(as_text=True)
    points = re.findall(r'class="pt champion" cx="[0-9.]+" cy="[0-9.]+" r="5" data-step="(\d+)"', html)
    assert [int(p) for p in points] == [s["step"] for s in steps]
    assert "<script>window.__pwned" not in html and "&lt;script&gt;" in html
    assert f'href="/runs/{dash.seeded.second_job}"' in html
    # Each candidate's row names its mode and the LLM calls it costs per 100 served tasks (issue 22).
    cands = [c for s in steps for c in s["candidates"]]
    table = html.split('id="candidates"', 1)[1].split("</table>", 1)[0]
    rows = [
        re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        for row in re.findall(r'<tr class="(?:accepted|rejected)">(.*?)</tr>', table, re.S)
    ]
    assert len(rows) == len(cands) and any(c.get("mode") for c in cands)
    for cells, cand in zip(rows, cands, strict=True):
        assert cells[2] == (cand.get("mode") or "")
        calls = cand.get("llm_calls_per_100")
        assert cells[7] == ("" if calls is None else f"{calls:.0f}")
    # What the prompt became: the run's start against its candidate, the added rule marked as added.
    _, middle, live = dash.seeded.versions
    assert (twin["diff"]["from"], twin["diff"]["to"]) == (middle, live)
    run_diff = html.split('<div id="run-diff">', 1)[1].split("</div>", 1)[0]
    assert re.search(r'<span class="add">\+LEVEL-TWO &lt;script&gt;', run_diff), run_diff


def test_live_page_and_twin_list_active_jobs(dash):
    services = dash.seeded.services
    queued = JobQueue(services).trigger(PROJECT, reason="test").job  # no worker: it stays queued
    try:
        twin = get(dash, "/jobs").get_json()
        assert [j["id"] for j in twin["jobs"]] == [queued] and twin["jobs"][0]["status"] == "queued"
        html = get(dash, "/dashboard/live").get_data(as_text=True)
        assert f'data-job="{queued}"' in html and 'src="/dashboard/static/live.js"' in html
    finally:
        JobQueue(services).queue.empty()
        services.redis.delete(services.store.keys.train_state(PROJECT))


def test_live_shows_a_bulk_pre_annotation_run_as_one_row_with_its_progress(dash):
    services = dash.seeded.services
    live = services.store.current_version(PROJECT)
    run = JobQueue(services).enqueue_bulk(PROJECT, live, reason="test")
    worker = SimpleWorker([services.settings.bulk_queue], connection=services.rq_redis)
    worker.work(burst=True, max_jobs=1)  # the plan only: its chunk jobs wait in the queue
    (row,) = get(dash, "/jobs").get_json()["jobs"]
    total = len(dash.ls.tasks)
    assert row["id"] == run and row["kind"] == "bulk" and row["status"] == "started"
    assert row["total"] == total and row["done"] == 0 and row["fraction"] == 0
    html = get(dash, "/dashboard/live").get_data(as_text=True)
    assert f'data-job="{run}"' in html and f'href="/jobs/{run}"' in html and f"0 / {total} tasks" in html
    worker.work(burst=True)  # the chunks
    assert get(dash, "/jobs").get_json()["jobs"] == []
    finished = get(dash, f"/jobs/{run}").get_json()
    assert finished["status"] == "finished" and sum(finished["progress"]["tasks"].values()) == total


def test_the_live_pages_cancel_button_stops_a_bulk_run_before_it_posts(dash):
    services = dash.seeded.services
    live = services.store.current_version(PROJECT)
    for task in dash.ls.tasks:  # a fresh start for this version, whatever ran before in this module
        task["predictions"] = []
    services.redis.delete(services.bulk.keys.bulk_done(PROJECT, live))
    run = JobQueue(services).enqueue_bulk(PROJECT, live, reason="test")
    worker = SimpleWorker([services.settings.bulk_queue], connection=services.rq_redis)
    worker.work(burst=True, max_jobs=1)  # the plan: its chunks wait in the queue
    html = get(dash, "/dashboard/live").get_data(as_text=True)
    action = f'action="/dashboard/jobs/{run}/cancel"'
    assert action in html
    refused = post_form(dash, f"/dashboard/jobs/{run}/cancel", {})  # no token: refused, nothing cancelled
    assert refused.status_code == 403 and services.cancels.requested(run) is None
    answer = post_form(dash, f"/dashboard/jobs/{run}/cancel", {"csrf_token": token_of(html)})
    assert answer.status_code == 303 and "notice=cancel-requested" in answer.headers["Location"]
    (row,) = get(dash, "/jobs").get_json()["jobs"]
    assert row["state"] == "cancelling" and row["cancelled_by"] == "admin" and not row["cancellable"]
    assert action not in get(dash, "/dashboard/live").get_data(as_text=True)  # no second button
    worker.work(burst=True)  # the chunks start, see the cancel, post nothing and release their claims
    view = get(dash, f"/jobs/{run}").get_json()
    assert view["status"] == "cancelled" and view["cancelled_by"]["by"] == "admin", view
    assert view["progress"]["tasks"] == {"cancelled": len(dash.ls.tasks)}
    assert [p for p in dash.ls.predictions() if p["model_version"] == live] == []
    claims = services.redis.keys(services.bulk.keys.bulk_claim(PROJECT, live, "*"))
    assert claims == []
    again = post_form(dash, f"/dashboard/jobs/{run}/cancel", {"csrf_token": token_of(html)})
    assert again.status_code == 409 and "already cancelled" in again.get_data(as_text=True)


def test_buttons_refuse_a_missing_or_foreign_token_and_a_foreign_origin(dash):
    page = get(dash, f"/dashboard/projects/{PROJECT}").get_data(as_text=True)
    token = token_of(page)
    path = f"/dashboard/projects/{PROJECT}/pin"
    assert post_form(dash, path, {}).status_code == 403
    assert post_form(dash, path, {"csrf_token": "0" * 64}).status_code == 403
    assert post_form(dash, path, {"csrf_token": "\x80" + token[1:]}).status_code == 403  # non-ASCII: was a 500
    # The token is bound to the credentials: another user's token is not this user's.
    assert dash.app.extensions["dashboard_csrf"].token(SimpleNamespace(headers=OTHER_AUTH)) != token
    refused = post_form(dash, path, {"csrf_token": token}, {"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "another origin" in refused.get_data(as_text=True)
    assert post_form(dash, path, {"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert dash.seeded.services.history.pinned(PROJECT) is None  # nothing above changed anything


def test_json_api_writes_from_another_site_are_refused(dash):
    """A page elsewhere cannot use the browser's basic-auth credentials on the JSON API either (text/plain forms
    that parse as JSON), while servers and scripts, which send no Origin, still can."""
    services, (_, middle, live) = dash.seeded.services, dash.seeded.versions
    forged = json.dumps({"version": middle, "pad": "="})  # what a text/plain form field name=value can spell
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = dash.client.post(f"/projects/{PROJECT}/rollback", data=forged,
                                  headers={**AUTH, "Content-Type": "text/plain", **headers})  # fmt: skip
        (header,) = headers  # the answer names the header that gave the request away, and its message says it
        assert answer.status_code == 403 and answer.get_json()["field"] == header, answer.get_json()
        assert header in answer.get_json()["error"]
    assert services.store.current_version(PROJECT) == live
    pinned = dash.client.post(f"/projects/{PROJECT}/pin", headers={**AUTH, "Origin": "http://localhost"})
    assert pinned.status_code == 200 and services.history.pinned(PROJECT) is not None  # same origin: allowed
    assert dash.client.post(f"/projects/{PROJECT}/unpin", headers=AUTH).status_code == 200  # no Origin: a script


def test_rollback_pin_unpin_and_train_buttons(dash):
    services = dash.seeded.services
    default, middle, live = dash.seeded.versions
    token = token_of(get(dash, f"/dashboard/projects/{PROJECT}").get_data(as_text=True))
    same_origin = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    done = post_form(dash, f"/dashboard/projects/{PROJECT}/rollback",
                     {"csrf_token": token, "version": middle, "expected": live}, same_origin)  # fmt: skip
    assert done.status_code == 303 and done.headers["Location"].endswith("notice=rolled-back")
    assert services.store.current_version(PROJECT) == middle
    assert dash.client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG},
                            headers=AUTH).get_json()["model_version"].startswith(middle + ".")  # fmt: skip
    # A stale page (it still expects the old live version) gets a conflict, not a silent overwrite.
    stale = post_form(dash, f"/dashboard/projects/{PROJECT}/rollback",
                      {"csrf_token": token, "version": default, "expected": live})  # fmt: skip
    assert stale.status_code == 409 and services.store.current_version(PROJECT) == middle
    bad = post_form(dash, f"/dashboard/projects/{PROJECT}/rollback", {"csrf_token": token, "version": "<x>"})
    assert bad.status_code == 400 and "version" in bad.get_data(as_text=True)
    assert post_form(dash, f"/dashboard/projects/{PROJECT}/pin", {"csrf_token": token}).status_code == 303
    assert services.history.pinned(PROJECT) is not None
    assert post_form(dash, f"/dashboard/projects/{PROJECT}/unpin", {"csrf_token": token}).status_code == 303
    assert services.history.pinned(PROJECT) is None
    try:
        assert post_form(dash, f"/dashboard/projects/{PROJECT}/train", {"csrf_token": token}).status_code == 303
        assert services.coalescer.status(PROJECT)["queued"] is not None
    finally:
        JobQueue(services).queue.empty()
        services.redis.delete(services.store.keys.train_state(PROJECT))
        services.history.rollback(PROJECT, live)


def test_unknown_references_are_4xx_pages(dash):
    assert get(dash, "/dashboard/projects/999").status_code == 404
    assert get(dash, "/dashboard/projects/a%20b").status_code == 400
    assert get(dash, "/dashboard/runs/nope").status_code == 404
    assert get(dash, "/runs/no$pe").status_code == 400


def test_demos_and_labels_are_shown_as_text(dash):
    """Runs last: it records one more version. Task text and label names reach the page only escaped."""
    services, live = dash.seeded.services, dash.seeded.versions[-1]
    hostile = Policy(
        "Plain instruction.", demos=(Demo('<img src=x onerror="window.__pwned=2">', {"intent": ["<b>Billing</b>"]}),)
    )
    services.store.record(PROJECT, hostile, parent=live, status="rejected", job="train-z")
    html = get(dash, f"/dashboard/projects/{PROJECT}").get_data(as_text=True)
    assert "<img src=x" not in html and "<b>Billing</b>" not in html
    assert "&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;" in html and "&lt;b&gt;Billing&lt;/b&gt;" in html
    assert f'<li class="version-card" id="{hostile.version}"' in html


def test_redis_down_is_a_503_page_and_a_503_json_naming_redis(make_settings):
    from _wsgi import create_app
    from testkit.redisserver import free_port

    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.2))
    client = app.test_client()
    page = client.get("/dashboard")
    assert page.status_code == 503 and page.mimetype == "text/html" and "Redis" in page.get_data(as_text=True)
    twin = client.get("/projects")
    assert twin.status_code == 503 and "Redis" in twin.get_json()["error"]
