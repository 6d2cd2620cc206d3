"""A cascade promoted by training in a real Label Studio 1.23.2 answers part of the tasks with no LLM call.

Half the project's texts give their label away in their words (the learned ranker is right and sure of them); the
other half are opaque hashes the ranker can only guess at. The scripted LLM looks answers up: right on every opaque
text, wrong on every clear one. So the LLM alone scores about half, the ranker alone a little more, and only a
cascade (the ranker where its calibrated confidence reaches tau, the LLM elsewhere) is right nearly everywhere. The
loop must find that; Label Studio then stores scored predictions of the cascade's version, and ``/metrics`` counts
the answers the ranker gave without calling the LLM.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sys

import httpx
import pytest

from optimizer.learning.gold import synth_config
from optimizer.runtime.versions import policy_version
from testkit.fakellm import FakeLLM, Reply, labels_from_system, last_user
from testkit.processes import wait_for
from testkit.scripted import LABELS, make_gold
from tests.support.backend_http import backend_get, finished, labelstudio_backend_events

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

N_CLEAR, N_OPAQUE = 50, 50  # of each kind, the first GOLD_EACH are annotated
GOLD_EACH = 40
CONFIG = synth_config(LABELS, multiple=False)


def texts() -> tuple[list[str], list[str], list[bool]]:
    """(text, label, clear) per task: the annotated first (GOLD_EACH clear, GOLD_EACH opaque), then the rest."""
    clear = [(item.input, item.answer["label"][0]) for item in make_gold(N_CLEAR)]
    opaque = [(f"request {hashlib.sha256(str(i).encode()).hexdigest()[:10]}", LABELS[i % 5]) for i in range(N_OPAQUE)]
    rows = []
    for i in range(max(N_CLEAR, N_OPAQUE)):
        rows += [(*clear[i], True), (*opaque[i], False)]
    gold = [r for r in rows if r[2]][:GOLD_EACH] + [r for r in rows if not r[2]][:GOLD_EACH]
    rest = [r for r in rows if r not in gold]
    ordered = gold + rest
    return [r[0] for r in ordered], [r[1] for r in ordered], [r[2] for r in ordered]


class LookupLLM:
    """Labeller (a request with the label format spec): looks the text up, answers right on opaque texts and wrong
    on clear ones. Proposer (any other request): a new instruction per request, none of which changes the answers."""

    def __init__(self, answers: dict[str, tuple[str, bool]]):
        self.answers = answers

    def find(self, user: str) -> tuple[str, str, bool] | None:
        text = user.split("\n\nCandidate labels for ")[0].strip()  # a narrowed input carries a candidates note
        if text in self.answers:
            return text, *self.answers[text]
        return None

    def __call__(self, body: dict) -> Reply:
        controls = labels_from_system(body)
        if not controls:
            digest = hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:8]
            return Reply(f"Label the request by what it asks for. Variant {digest}.")
        found = self.find(last_user(body))
        answer = {}
        for name, (labels, _multiple) in controls.items():
            if found is None:
                answer[name] = labels[0]
                continue
            _text, label, clear = found
            answer[name] = next(x for x in labels if x != label) if clear else label
        return Reply(json.dumps(answer))


def choices(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def label_of(prediction: dict) -> list[str]:
    return next(i["value"]["choices"] for i in prediction["result"] if i["from_name"] == "label")


def answers_by_source(backend, project: str) -> dict[str, float]:
    """``lsml_answers_total`` of ``project`` (the key Label Studio sends, ``<id>.<created at>``) by source."""
    response = httpx.get(backend.url + "/metrics", headers=backend.auth_header, timeout=10)
    assert response.status_code == 200, response.text
    out = {"ranker": 0.0, "llm": 0.0}
    for line in response.text.splitlines():
        match = re.match(r"lsml_answers_total\{(.*)\} ([0-9.e+]+)$", line)
        if match and f'project="{project}"' in match.group(1):
            source = re.search(r'source="([^"]+)"', match.group(1)).group(1)
            out[source] = out.get(source, 0.0) + float(match.group(2))
    return out


def test_a_promoted_cascade_stores_scored_predictions_and_answers_some_tasks_without_the_llm(
    labelstudio, start_backend
):
    task_texts, labels, clear = texts()
    lookup = LookupLLM({t: (label, c) for t, label, c in zip(task_texts, labels, clear, strict=True)})
    with FakeLLM(lookup) as llm:
        auth = ("labelstudio", secrets.token_urlsafe(12))
        secret = secrets.token_urlsafe(24)
        env = {
            "LABEL_STUDIO_URL": labelstudio.url,
            "LABEL_STUDIO_API_KEY": labelstudio.token,  # a user has one personal token: test_training_e2e makes it
            "RQ_QUEUE": "casc-" + secrets.token_hex(4),
            "RETRAIN_EVERY_N": "0",
            "TRAIN_MIN_GOLD": "20",
            "OPTIMIZE_BUDGET": "250",
            "PREDICT_SYNC_MAX": str(len(task_texts)),  # one /predict answers every task: all counted in /metrics
            "DEFAULT_PROMPT": "Label the request.",
        }
        backend = start_backend(llm.base_url, basic_auth=auth, webhook_secret=secret, env=env)
        backend.spawn([sys.executable, "-m", "optimizer", "worker"], name="worker")

        # 1. A project whose first 2 x GOLD_EACH tasks are annotated through the SDK; the backend connected.
        project, task_ids = labelstudio.create_project(CONFIG, [{"text": t} for t in task_texts])
        ml = labelstudio.connect_with_secret(project.id, backend.url, auth, secret)
        n_gold = 2 * GOLD_EACH
        for task_id, label in zip(task_ids[:n_gold], labels[:n_gold], strict=True):
            labelstudio.client.annotations.create(id=task_id, result=choices(label))
        backend.wait_for_request("/webhook", n_gold)
        v1 = labelstudio.ml_backend(ml.id)["model_version"]

        # 2. Start training in Label Studio; the worker's run must promote a cascade.
        labelstudio.client.ml.train(ml.id)
        backend.wait_for_request("/webhook", n_gold + 1)
        events = labelstudio_backend_events(backend, project.id)
        job_id = next(e["job"] for e in events if e["action"] == "START_TRAINING")
        job = wait_for(lambda: finished(backend, job_id), 240, 0.5, what=f"job {job_id}; {backend.log_tail()}")
        assert job["status"] == "finished", job
        result = job["result"]
        report = result["report"]
        entries = [c for step in report["run"]["steps"] for c in step.get("candidates", [])]
        promoted = [c for c in entries if c["status"] == "promoted"]
        summary = [(c["kind"], c.get("mode"), c["status"], c.get("minibatch"), c.get("val")) for c in entries]
        assert result["promoted"] is True and result["gold"]["used"] == n_gold, (result, summary)
        assert promoted and promoted[-1]["mode"] == "cascade", summary
        v2 = result["live_after"]
        assert v2 != policy_version(v1) and result["live_before"] == policy_version(v1)

        # 3. The live policy is that cascade, and Label Studio serves its version.
        listing = backend_get(backend, f"/projects/{project.id}/policies")
        assert listing["live"] == v2, listing
        live = backend_get(backend, f"/projects/{project.id}/policies/{v2}")["policy"]
        assert live["mode"] == "cascade" and 0 < live["tau"] <= 1 and live["ranker"], live
        served = labelstudio.ml_backend(ml.id)["model_version"]
        assert policy_version(served) == v2

        # 4. Retrieve: one scored prediction of the served version per task; the clear texts right, by the ranker.
        before, asked_before = answers_by_source(backend, listing["project"]), len(llm.requests)
        labelstudio.retrieve_predictions(project.id)
        after = answers_by_source(backend, listing["project"])
        sent = {lookup.find(last_user(b))[0] for b in llm.requests[asked_before:] if labels_from_system(b)}
        right_without_llm = 0
        for task_id, text, label, is_clear in zip(task_ids, task_texts, labels, clear, strict=True):
            newest = [p for p in labelstudio.predictions(task_id) if p["model_version"] == served]
            assert len(newest) == 1, (task_id, labelstudio.predictions(task_id))
            score = newest[0]["score"]
            assert isinstance(score, int | float) and 0 < score <= 1, newest[0]
            if is_clear and text not in sent and label_of(newest[0]) == [label]:
                right_without_llm += 1
        assert right_without_llm > N_CLEAR // 2, (right_without_llm, sorted(sent))

        # 5. /metrics counts every task of that retrieve by what answered it: the ranker for some, the LLM for others.
        ranker, by_llm = after["ranker"] - before["ranker"], after["llm"] - before["llm"]
        assert ranker > 0 and by_llm > 0, (before, after)
        assert ranker + by_llm == len(task_ids), (before, after)
        assert by_llm == len(sent), (after, len(sent))
