"""Live quality: annotations scored against what the backend answered, per version and label, through the real app.

The pure parts (one annotation's contribution, the figures, the gate) are checked on their own; the rest goes through
the app with real Redis and the scripted LLM: ``/predict`` answers tasks, Label Studio's recorded webhook payloads
bring annotations, and ``GET /projects/<p>/quality``, the dashboard and ``/metrics`` must show what they add up to.
"""

from __future__ import annotations

import json
import logging

import pytest

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.live_quality import NO_ANSWER, Moments, contribution, figures, key, live_gate
from optimizer.runtime.versions import policy_version
from optimizer.state.quality import QualityCounts
from testkit.constants import SUPPORT_CONFIG, THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM, Reply
from testkit.lspayloads import uid, webhook

THREE = parse_label_config(THREE_CONTROLS_CONFIG)
PROJECT_ID = 4


def text_task(task_id: int, text: str) -> dict:
    return {"id": task_id, "data": {"text": text}}


def choices(name: str, *labels: str) -> dict:
    return {"from_name": name, "to_name": "text", "type": "choices", "value": {"choices": list(labels)}}


# --- pure parts ------------------------------------------------------------------------------------------------------


def test_a_multiple_choice_annotation_counts_tp_fp_fn_per_label_and_its_set_f1():
    counts = contribution(THREE, {"topics": ["billing", "returns"]}, {"topics": ["billing", "shipping"]}, None)
    assert counts[key("tp", "topics", "billing")] == 1
    assert counts[key("fp", "topics", "returns")] == 1
    assert counts[key("fn", "topics", "shipping")] == 1
    assert key("tp", "topics", "returns") not in counts and key("fn", "topics", "billing") not in counts
    assert counts["n"] == 1 and counts["r"] == 500_000  # set F1 of {billing, returns} against {billing, shipping}
    assert not any(json.loads(k)[0] == "cm" for k in counts if k.startswith("["))  # no confusion for multiple


def test_a_single_choice_annotation_adds_one_confusion_cell_and_an_empty_answer_is_its_own_column():
    wrong = contribution(THREE, {"sentiment": ["neutral"]}, {"sentiment": ["negative"]}, None)
    assert wrong[key("cm", "sentiment", "negative", "neutral")] == 1 and wrong["r"] == 0
    empty = contribution(THREE, {}, {"sentiment": ["negative"]}, None)
    assert empty[key("cm", "sentiment", "negative", NO_ANSWER)] == 1 and empty[key("fn", "sentiment", "negative")] == 1
    assert contribution(THREE, {"sentiment": ["neutral"]}, {}, None) is None  # the annotation judges nothing


def test_figures_give_precision_recall_f1_per_label_and_the_confusion_table():
    total: dict[str, int] = {}
    pairs = [("positive", "positive"), ("positive", "negative"), ("negative", "negative"), ("neutral", "negative")]
    for got, want in pairs:
        for k, v in contribution(THREE, {"sentiment": [got]}, {"sentiment": [want]}, None).items():
            total[k] = total.get(k, 0) + v
    found = figures("v1", total, THREE).to_dict()
    assert found["annotations"] == 4 and found["f1"] == pytest.approx(0.5)
    (control,) = found["controls"]
    labels = {row["label"]: row for row in control["labels"]}
    assert labels["negative"] == {"label": "negative", "tp": 1, "fp": 0, "fn": 2, "support": 3, "precision": 1.0,
                                  "recall": pytest.approx(1 / 3, abs=1e-6), "f1": 0.5}  # fmt: skip
    assert labels["positive"]["precision"] == 0.5 and labels["positive"]["recall"] == 1.0
    table = control["confusion"]
    assert table["labels"] == ["negative", "positive"] and table["predicted"] == ["negative", "positive", "neutral"]
    assert table["counts"] == [[1, 1, 1], [0, 1, 0]]


def test_the_gate_flags_a_drop_beyond_noise_and_only_once_both_sides_have_n_annotations():
    good, bad = Moments(40, 36 * 10**6, 36 * 10**6), Moments(20, 8 * 10**6, 8 * 10**6)  # 0.9 against 0.4
    assert live_gate("v2", bad, "v1", good, 20).flagged
    assert not live_gate("v2", Moments(19, 0, 0), "v1", good, 20).flagged  # window not full yet
    assert not live_gate("v2", bad, "v1", Moments(10, 9 * 10**6, 9 * 10**6), 20).flagged  # parent too thin
    close = Moments(20, 17 * 10**6, 17 * 10**6)  # 0.85 against 0.9: within noise at these sizes
    verdict = live_gate("v2", close, "v1", good, 20)
    assert not verdict.flagged and "within noise" in verdict.reason


# --- Redis counts: an update replaces, a delete removes, the first-N window -------------------------------------------


def test_an_updated_annotation_replaces_its_contribution_and_a_deleted_one_leaves_nothing(redis_client, namespace):
    counts = QualityCounts(redis_client, namespace)
    first = contribution(THREE, {"sentiment": ["neutral"]}, {"sentiment": ["neutral"]}, None)
    second = contribution(THREE, {"sentiment": ["neutral"]}, {"sentiment": ["negative"]}, None)
    counts.score("p", 7, "v1", first, first_n=5)
    counts.score("p", 7, "v1", second, first_n=5)
    stored = counts.counts("p", ["v1"])["v1"]
    assert stored["n"] == 1 and stored["wn"] == 1 and stored.get("r", 0) == 0
    assert stored[key("cm", "sentiment", "negative", "neutral")] == 1
    assert key("tp", "sentiment", "neutral") not in stored  # the first contribution's fields are gone, not zeroed
    assert counts.forget("p", [7, 8]) == 1
    assert counts.counts("p", ["v1"])["v1"] == {}


def test_the_first_n_window_fills_once_and_a_deleted_annotation_frees_its_place(redis_client, namespace):
    counts = QualityCounts(redis_client, namespace)
    one = contribution(THREE, {"sentiment": ["neutral"]}, {"sentiment": ["neutral"]}, None)
    filled = [counts.score("p", a, "v1", one, first_n=2).filled for a in (1, 2, 3)]
    assert filled == [False, True, False]
    assert counts.score("p", 2, "v1", one, first_n=2).filled is False  # an update inside the window stays inside
    stored = counts.counts("p", ["v1"])["v1"]
    assert (stored["n"], stored["wn"]) == (3, 2)
    counts.forget("p", [1])
    assert counts.score("p", 4, "v1", one, first_n=2).filled is True  # annotation 4 takes the freed place
    assert counts.counts("p", ["v1"])["v1"]["wn"] == 2


# --- through the app --------------------------------------------------------------------------------------------------


@pytest.fixture
def app_client(make_settings):
    from _wsgi import create_app

    def build(**overrides):
        settings = make_settings(**overrides)
        app = create_app(settings)
        return app.test_client(), app.extensions["services"]

    return build


def annotate(client, task: dict, result: list, *, annotation: int, action: str = "ANNOTATION_CREATED", **fields):
    payload = webhook(action, PROJECT_ID, THREE_CONTROLS_CONFIG)
    payload["annotation"].update(id=annotation, task=task["id"], result=result, **fields)
    payload["task"].update(id=task["id"], data=task["data"])
    answer = client.post("/webhook", json=payload)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return answer.get_json()


def predict(client, tasks: list[dict], **extra) -> list:
    body = {"tasks": tasks, "project": uid(PROJECT_ID), "label_config": THREE_CONTROLS_CONFIG, **extra}
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["results"]


def label_row(report: dict, control: str, label: str, version: int = 0) -> dict:
    controls = {c["name"]: c for c in report["versions"][version]["controls"]}
    return next(row for row in controls[control]["labels"] if row["label"] == label)


def test_annotations_move_the_live_figures_of_the_version_that_answered(app_client):
    client, services = app_client()
    tasks = [text_task(1, "billing, I am negative"), text_task(2, "shipping was positive"), text_task(3, "returns")]
    results = predict(client, tasks)
    version = results[0]["model_version"]
    assert annotate(client, tasks[0], [choices("topics", "billing"), choices("sentiment", "negative")], annotation=11)

    report = client.get(f"/projects/{PROJECT_ID}/quality").get_json()
    (row,) = report["versions"]
    assert row["version"] == version and row["annotations"] == 1 and row["f1"] == 1.0
    assert report["last_answered"]["version"] == version
    assert label_row(report, "sentiment", "negative")["tp"] == 1

    # The same annotation updated to another label is counted once, as it stands now.
    annotate(client, tasks[0], [choices("sentiment", "positive")], annotation=11, action="ANNOTATION_UPDATED")
    report = client.get(f"/projects/{PROJECT_ID}/quality").get_json()
    assert report["versions"][0]["annotations"] == 1 and report["versions"][0]["f1"] == 0.0
    assert label_row(report, "sentiment", "positive")["fn"] == 1
    assert label_row(report, "sentiment", "negative") == {**label_row(report, "sentiment", "negative"), "tp": 0,
                                                          "fp": 1}  # fmt: skip
    assert [c["name"] for c in report["versions"][0]["controls"]] == ["sentiment"]  # topics left with the update

    # Another annotator's answer on task 2, then deleting annotation 11: only task 2's is left.
    annotate(client, tasks[1], [choices("sentiment", "positive")], annotation=12)
    deleted = webhook("ANNOTATIONS_DELETED", PROJECT_ID, THREE_CONTROLS_CONFIG, annotations=[{"id": 11}])
    assert client.post("/webhook", json=deleted).status_code == 201
    report = client.get(f"/projects/{PROJECT_ID}/quality").get_json()
    assert report["versions"][0]["annotations"] == 1 and report["versions"][0]["f1"] == 1.0
    assert label_row(report, "sentiment", "positive") == {**label_row(report, "sentiment", "positive"), "tp": 1,
                                                          "fn": 0}  # fmt: skip

    # The dashboard shows the same figures; /metrics has a gauge for the version.
    page = client.get(f"/dashboard/projects/{PROJECT_ID}").get_data(as_text=True)
    assert f'<tr data-version="{version}"' in page and 'data-label="positive"' in page
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'lsml_live_f1{{model_version="{version}",project="{uid(PROJECT_ID)}"}} 1.0' in metrics
    assert f'lsml_live_annotations{{model_version="{version}",project="{uid(PROJECT_ID)}"}} 1.0' in metrics
    events = services.projects.events(uid(PROJECT_ID), 10)
    assert [e.get("quality") for e in events[:2]] == ["removed 1", "scored"]


def test_what_label_studio_does_not_store_is_not_scored(app_client):
    client, services = app_client()
    tasks = [text_task(1, "billing negative"), text_task(2, "shipping positive")]
    # An interactive preview (a context from the editor) is shown, never stored: no answer is recorded for it.
    predict(client, tasks[:1], params={"context": {"result": []}})
    assert services.served.get(uid(PROJECT_ID), 1) is None
    assert annotate(client, tasks[0], [choices("sentiment", "negative")], annotation=21)["action"]
    assert annotate(client, tasks[1], [choices("sentiment", "positive")], annotation=22)  # never predicted
    predict(client, tasks[:1])
    annotate(client, tasks[0], [choices("sentiment", "negative")], annotation=23, was_cancelled=True)
    report = client.get(f"/projects/{PROJECT_ID}/quality").get_json()
    assert report["unscored"] == {"no_prediction": 2, "cancelled": 1}
    assert [v["annotations"] for v in report["versions"]] == [0]


class Grab(logging.Handler):
    """Records of one logger (the app's logging setup replaces the root handlers, pytest's caplog among them)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.INFO)
        self.logger, self.records = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)


def test_a_promoted_version_worse_than_its_parent_is_flagged_on_the_page_and_in_the_log(app_client, fake_llm):
    from optimizer.serving.policy import Policy

    client, services = app_client(live_gate_annotations=4)
    project = uid(PROJECT_ID)
    good = [text_task(i, f"I am negative #{i}") for i in range(1, 7)]
    (start_served,) = {r["model_version"] for r in predict(client, good)}
    for task in good:
        annotate(client, task, [choices("sentiment", "negative")], annotation=100 + task["id"])
    start = services.store.current(project)
    worse = Policy(start.instruction + "\nAlways neutral.")
    assert services.store.promote(project, worse, start.version, source="train").ok
    fake_llm.responder = lambda body: Reply(json.dumps({"sentiment": "neutral"}))
    bad = [text_task(i, f"I am negative #{i}") for i in range(11, 15)]
    (served,) = {r["model_version"] for r in predict(client, bad)}  # what Label Studio holds: the served version
    assert policy_version(served) == worse.version and policy_version(start_served) == start.version
    with Grab("optimizer.runtime.live") as grab:
        for task in bad:
            annotate(client, task, [choices("sentiment", "negative")], annotation=100 + task["id"])
        annotate(client, bad[0], [choices("sentiment", "negative")], annotation=111, action="ANNOTATION_UPDATED")
    warnings = [r for r in grab.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and served in warnings[0].getMessage()

    report = client.get(f"/projects/{PROJECT_ID}/quality").get_json()
    assert report["flagged"] == [served]
    gate = report["versions"][0]["gate"]
    assert gate["parent"] == start_served and gate["score"] == 0.0 and gate["parent_score"] == 1.0
    page = client.get(f"/dashboard/projects/{PROJECT_ID}").get_data(as_text=True)
    assert f'class="error flag" data-version="{served}"' in page
    assert services.store.current(project).version == worse.version  # flagged, never rolled back by itself
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'lsml_live_regression{{model_version="{served}",project="{project}"}} 1.0' in metrics


def test_a_bulk_chunk_records_what_it_posted(make_settings):
    from optimizer.jobs.bulk import run_chunk
    from optimizer.runtime.services import Services
    from testkit.fakels import FakeLabelStudio
    from testkit.training_stack import gold_tasks

    with FakeLLM() as llm, FakeLabelStudio(SUPPORT_CONFIG, gold_tasks(0, 3)) as ls:
        settings = make_settings(llm_base_url=llm.base_url, label_studio_url=ls.url, label_studio_api_key=ls.token)
        services = Services(settings)
        project = uid(1)
        services.projects.seen(project, SUPPORT_CONFIG)
        version = services.store.current(project).version
        summary = run_chunk(services, project, version, [1, 2, 3], "holder-1")
        assert summary.outcomes["posted"] == 3
        posted = {p["task"]: p for p in ls.predictions()}
        for task in (1, 2, 3):
            served = services.served.get(project, task)
            assert served is not None and served.version == posted[task]["model_version"] == summary.served
            assert policy_version(served.version) == version
            assert served.answer == {"intent": posted[task]["result"][0]["value"]["choices"]}
