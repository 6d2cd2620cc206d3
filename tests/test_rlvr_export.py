"""The RLVR / preference export: source rules, soft judge rewards, z-scores, the CLI and the HTTP route."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from _wsgi import create_app
from optimizer.cli.main import main
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.rlvr import ExportError, Format, export_lines, rlvr_lines
from testkit.constants import REWARD_CONFIG, THREE_CONTROLS_CONFIG
from testkit.fakels import FakeLabelStudio

SCHEMA = parse_label_config(REWARD_CONFIG)


def grade(value: str, **extra) -> dict:
    item = {"from_name": "reward", "to_name": "output", "type": "choices", "value": {"choices": [value]}}
    return {"result": [item], **extra}


def judged(value: str, score: float, pid: int = 1) -> dict:
    return {"id": pid, "result": [{**grade(value)["result"][0], "score": score}], "score": score}


def task(tid: int, prompt: str, response: str, annotations=(), predictions=()) -> dict:
    data = {"prompt": prompt, "response": response}
    return {"id": tid, "data": data, "annotations": list(annotations), "predictions": list(predictions)}


TASKS = [
    # Two annotators: the ground truth wins over the later one.
    task(
        1,
        "2x+3=7?",
        "x = 2",
        [grade("1", id=11, ground_truth=True, updated_at="2024-01-01"), grade("0", id=12, updated_at="2024-02-01")],
        [judged("1", 0.9)],
    ),
    task(2, "2x+3=7?", "x = 5", [grade("0", id=21)], [judged("1", 0.6)]),
    # Cancelled only: no human grade; the judge said Bad with p=0.8, so P(Good) = 0.2.
    task(3, "Capital of France?", "Paris", [grade("1", id=31, was_cancelled=True)], [judged("0", 0.8)]),
    task(4, "Capital of Peru?", "Lima", [grade("1", id=41)]),
    task(5, "Largest planet?", "Jupiter", [], []),  # nothing at all: never exported
]


def test_human_grades_win_and_judged_tasks_need_the_flag():
    lines = rlvr_lines(SCHEMA, TASKS)
    assert [(line["task_id"], line["reward"], line["reward_source"]) for line in lines] == [
        (1, 1.0, "human"),
        (2, 0.0, "human"),
        (4, 1.0, "human"),
    ]
    first = lines[0]
    assert first["annotation_id"] == 11 and first["prompt"] == "2x+3=7?" and first["response"] == "x = 2"
    assert first["judge_reward"] == pytest.approx(0.9)
    assert lines[1]["judge_reward"] == pytest.approx(0.6) and lines[2]["judge_reward"] is None

    with_judge = rlvr_lines(SCHEMA, TASKS, include_judged=True)
    third = next(line for line in with_judge if line["task_id"] == 3)
    assert third["reward_source"] == "judge" and third["reward"] == 0.0 and "annotation_id" not in third
    assert third["judge_reward"] == pytest.approx(0.2)
    assert {line["task_id"] for line in with_judge} == {1, 2, 3, 4}


def test_rewards_are_z_scored_within_a_prompt_and_over_the_file_for_lone_responses():
    lines = {line["task_id"]: line for line in rlvr_lines(SCHEMA, TASKS)}
    assert lines[1]["reward_z"] == pytest.approx(1.0) and lines[2]["reward_z"] == pytest.approx(-1.0)
    # Task 4 is alone under its prompt: against the file's rewards (1, 0, 1), mean 2/3, std sqrt(2)/3.
    assert lines[4]["reward_z"] == pytest.approx((1 - 2 / 3) / (2**0.5 / 3), abs=1e-5)


def test_preference_pairs_come_from_prompts_with_two_graded_responses():
    pairs = export_lines(SCHEMA, TASKS, Format.PREFERENCE)
    assert pairs == [{"prompt": "2x+3=7?", "chosen": "x = 2", "rejected": "x = 5"}]


def test_a_config_that_is_not_reward_scoring_is_refused():
    with pytest.raises(ExportError, match="reward-scoring"):
        rlvr_lines(parse_label_config(THREE_CONTROLS_CONFIG), TASKS)


# --- CLI and HTTP against a scripted Label Studio over HTTP ---------------------------------------------------------


@pytest.fixture
def fake_ls():
    with FakeLabelStudio(REWARD_CONFIG, TASKS, project_id=7) as fake:
        yield fake


def test_cli_writes_the_rlvr_file(fake_ls, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABEL_STUDIO_URL", fake_ls.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", fake_ls.token)
    out = tmp_path / "rewards.jsonl"
    assert main(["export", "--project", "7", "--format", "rlvr", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["task_id"] for line in lines] == [1, 2, 4]
    assert "3 lines (3 human)" in capsys.readouterr().err
    assert main(["export", "--project", "7", "--include-judged", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 4


def test_cli_fails_loudly_without_label_studio(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABEL_STUDIO_URL", "")
    out = tmp_path / "x.jsonl"
    assert main(["export", "--project", "7", "--out", str(out)]) == 1
    assert "LABEL_STUDIO_URL is not set" in capsys.readouterr().err and not out.exists()


def auth_headers() -> dict:
    return {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}


def connect(client, project: int = 7, headers: dict | None = None) -> None:
    """What Label Studio does when a user adds the backend to a project: ``/setup`` with the project's uid."""
    answer = client.post("/setup", json={"project": f"{project}.1700000000", "schema": REWARD_CONFIG}, headers=headers)
    assert answer.status_code == 200, answer.get_json()


class AuditLines(logging.Handler):
    """The ``export`` logger's records (attached to that logger: the app's logging setup replaces the root's
    handlers, pytest's ``caplog`` among them)."""

    def __enter__(self):
        self.records: list[logging.LogRecord] = []
        logging.getLogger("export").addHandler(self)
        return self.records

    def __exit__(self, *exc) -> None:
        logging.getLogger("export").removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def exported(answer) -> list[dict]:
    return [json.loads(line) for line in answer.get_data(as_text=True).splitlines()]


def test_http_export_behind_basic_auth(fake_ls, make_settings):
    settings = make_settings(
        label_studio_url=fake_ls.url, label_studio_api_key=fake_ls.token, basic_auth_user="u", basic_auth_pass="p"
    )
    client = create_app(settings).test_client()
    # Label Studio's token can read project 7, but nobody connected it to this backend: it is not exported.
    unknown = client.get("/projects/7/export?format=rlvr", headers=auth_headers())
    assert unknown.status_code == 404 and unknown.get_json()["field"] == "project"
    assert "has not seen it" in unknown.get_json()["error"]
    assert not [r for r in fake_ls.requests if "/api/" in r], "an unknown project must not even be read"
    connect(client, headers=auth_headers())
    assert client.get("/projects/7/export?format=rlvr").status_code == 401
    with AuditLines() as audit:
        answer = client.get("/projects/7/export?format=rlvr", headers=auth_headers())
    assert answer.status_code == 200 and answer.mimetype == "application/x-ndjson"
    assert [line["reward"] for line in exported(answer)] == [1.0, 0.0, 1.0]
    (line,) = audit
    assert line.principal == "u" and line.project == "7.1700000000" and line.lines == 3
    assert "by u from 127.0.0.1" in line.getMessage()
    by_uid = client.get("/projects/7.1700000000/export?format=preference&include_judged=1", headers=auth_headers())
    assert exported(by_uid)[0]["chosen"] == "x = 2"
    bad = client.get("/projects/7/export?format=csv", headers=auth_headers())
    assert bad.status_code == 400 and '"format"' in bad.get_json()["error"]
    flag = client.get("/projects/7/export?include_judged=maybe", headers=auth_headers())
    assert flag.status_code == 400 and "include_judged" in flag.get_json()["error"]
    assert client.get("/projects/x7/export", headers=auth_headers()).status_code == 404
    malformed = client.get("/projects/7:1/export", headers=auth_headers())
    assert malformed.status_code == 400 and malformed.get_json()["field"] == "project"


def test_http_export_without_basic_auth_needs_the_explicit_flag(fake_ls, make_settings):
    """No basic auth: reads are open, but the export hands out what Label Studio holds, so it is refused unless
    ALLOW_ANONYMOUS_EXPORT=1 says so in as many words; and an unknown project stays refused even then."""
    values = {"label_studio_url": fake_ls.url, "label_studio_api_key": fake_ls.token}
    closed = create_app(make_settings(**values)).test_client()
    connect(closed)
    refused = closed.get("/projects/7/export?format=rlvr")
    assert refused.status_code == 403 and refused.get_json()["field"] == "Authorization"
    assert "ALLOW_ANONYMOUS_EXPORT=1" in refused.get_json()["error"]
    assert closed.get("/projects/7/policies").status_code == 200  # other reads stay open
    opened = create_app(make_settings(**values, allow_anonymous_export=True)).test_client()
    with AuditLines() as audit:
        answer = opened.get("/projects/7/export?format=rlvr")
    assert answer.status_code == 200 and len(exported(answer)) == 3
    assert [r.principal for r in audit] == ["anonymous"]
    assert opened.get("/projects/8/export").status_code == 404  # never connected


def test_http_export_without_label_studio_settings_is_a_503(make_settings):
    client = create_app(make_settings(label_studio_url="", allow_anonymous_export=True)).test_client()
    connect(client)
    answer = client.get("/projects/7/export")
    assert answer.status_code == 503 and "LABEL_STUDIO_URL" in answer.get_json()["error"]
