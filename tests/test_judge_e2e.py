"""A reward-scoring project end to end: a real Label Studio 1.23.2, the backend under gunicorn, a real RQ worker.

1. A project with the RLVR scoring config and 48 graded BANKING77 tasks (``testkit/data/graded_banking77.jsonl``).
2. Retrieve predictions: the judge grades every task, with a logprob score, and Label Studio stores them.
3. Forty human grades through the SDK, plus one cancelled annotation that must count for nothing.
4. Start training: the job reads the grades back, optimises the judge with the balanced verifier, reports
   balanced accuracy and kappa, and promotes the better judge: Label Studio's model version changes.
5. Export: the CLI and the HTTP route give 40 human lines with the annotators' rewards; the judged lines appear only
   with ``--include-judged``.
6. Retrieve again: Label Studio now holds the trained judge's grades, which are the right ones.

Forty grades, not a dozen: on a dozen the validation split holds three or four items, and the gate rightly refuses
even a perfect judge on so few (it needs two net wins and a bootstrap p under 0.05), so nothing would change.
"""

from __future__ import annotations

import json
import secrets
import sys

import httpx
import pytest

from optimizer.cli.main import main
from testkit.constants import REWARD_CONFIG
from testkit.fakellm import FakeLLM
from testkit.judging import ScriptedJudge, graded_rows
from testkit.processes import wait_for

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

N_TASKS, N_HUMAN = 48, 40
ROWS = graded_rows()[:N_TASKS]


def grade(value: str) -> list[dict]:
    return [{"from_name": "reward", "to_name": "output", "type": "choices", "value": {"choices": [value]}}]


@pytest.fixture
def judge_llm():
    with FakeLLM(ScriptedJudge(ROWS)) as fake:
        yield fake


def get(backend, path: str) -> httpx.Response:
    return httpx.get(backend.url + path, headers=backend.auth_header, timeout=30)


def test_reward_scoring_project_judge_training_and_rlvr_export(
    labelstudio, start_backend, judge_llm, tmp_path, monkeypatch
):
    auth = ("labelstudio", secrets.token_urlsafe(12))
    secret = secrets.token_urlsafe(24)
    env = {
        "LABEL_STUDIO_URL": labelstudio.url,
        "LABEL_STUDIO_API_KEY": labelstudio.token,
        "RQ_QUEUE": "judge-" + secrets.token_hex(4),
        "RETRAIN_EVERY_N": "0",
        "TRAIN_MIN_GOLD": "8",
        "OPTIMIZE_BUDGET": "200",
    }
    backend = start_backend(judge_llm.base_url, basic_auth=auth, webhook_secret=secret, env=env)
    backend.spawn([sys.executable, "-m", "optimizer", "worker"], name="worker")

    # 1. The project and its tasks, connected to the backend.
    data = [{"prompt": r["prompt"], "response": r["response"]} for r in ROWS]
    project, task_ids = labelstudio.create_project(REWARD_CONFIG, data)
    ml = labelstudio.connect_with_secret(project.id, backend.url, auth, secret)

    # 2. The judge grades every task, with a real score, under the judge's default instruction.
    version, stored = labelstudio.retrieve_all(project.id, ml.id, task_ids)
    assert all(len(p) == 1 and p[0]["model_version"] == version for p in stored), stored
    for (prediction,) in stored:
        (item,) = prediction["result"]
        assert item["from_name"] == "reward" and item["value"]["choices"] == ["1"]  # the untrained judge: "Good"
        assert 0 < prediction["score"] < 1
    assert len({p[0]["score"] for p in stored}) > 1
    assert "strict grader" in judge_llm.requests[0]["messages"][0]["content"]

    # 3. Forty human grades, and a cancelled annotation on the thirteenth task.
    for task_id, row in zip(task_ids[:N_HUMAN], ROWS[:N_HUMAN], strict=True):
        labelstudio.client.annotations.create(id=task_id, result=grade(row["reward"]))
    labelstudio.client.annotations.create(id=task_ids[N_HUMAN], result=grade("0"), was_cancelled=True)
    hooks = backend.wait_for_request("/webhook", N_HUMAN + 1)
    assert {a.status for a in hooks} == {201}, backend.log_tail()

    # 4. Start training: the job runs on the 40 grades with the balanced verifier, reports BA and kappa, and promotes
    # the judge that carries the rule the scripted proposer offers (with it the scripted judge grades every item right).
    labelstudio.client.ml.train(ml.id)
    events = wait_for(
        lambda: [e for e in get(backend, f"/projects/{project.id}/events").json()["events"] if e.get("job")],
        30,
        0.3,
        what="the START_TRAINING event",
    )
    job_id = events[0]["job"]

    def finished():
        view = get(backend, f"/jobs/{job_id}").json()
        return view if view["status"] in ("finished", "failed") else None

    job = wait_for(finished, 240, 0.5, what=f"job {job_id}; {backend.log_tail()}")
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["gold"]["used"] == N_HUMAN and result["verifier"] == "balanced_accuracy", result
    before, after = result["judge"]["initial"], result["judge"]["best"]
    # The untrained judge says "Good" to everything: balanced accuracy 0.5 and kappa 0, whatever the imbalance.
    assert before["validation"]["balanced_accuracy"] == 0.5 and before["validation"]["kappa"] == 0.0
    assert before["test"]["balanced_accuracy"] == pytest.approx(0.5) and before["test"]["kappa"] == 0.0
    print("judge before/after:", json.dumps(result["judge"]), "promoted:", result["promoted"])
    # What the run must change: a better judge on held-out items, promoted, and Label Studio told so.
    assert result["promoted"] is True, result.get("reason", result)
    assert after["validation"]["balanced_accuracy"] == 1.0 and after["validation"]["kappa"] == 1.0
    assert after["test"]["balanced_accuracy"] == 1.0 and after["test"]["n"] == before["test"]["n"] > 0
    trained = labelstudio.ml_backend(ml.id)["model_version"]  # GET /api/ml/{id} calls /setup
    assert trained != version, "Label Studio still holds the untrained judge's version"

    # 5. Export: 12 human lines with the annotators' rewards; judged lines only with --include-judged.
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.token)
    out = tmp_path / "rewards.jsonl"
    assert main(["export", "--project", str(project.id), "--format", "rlvr", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == N_HUMAN and {line["reward_source"] for line in lines} == {"human"}
    by_task = {line["task_id"]: line for line in lines}
    for task_id, row in zip(task_ids[:N_HUMAN], ROWS[:N_HUMAN], strict=True):
        line = by_task[task_id]
        assert line["reward"] == float(row["reward"]) and line["prompt"] == row["prompt"]
        assert line["response"] == row["response"] and isinstance(line["annotation_id"], int)
        assert 0 < line["judge_reward"] < 1  # the judge chose "Good": its probability of it
        assert isinstance(line["reward_z"], float)

    assert main(["export", "--project", str(project.id), "--include-judged", "--out", str(out)]) == 0
    everything = [json.loads(line) for line in out.read_text().splitlines()]
    judged = [line for line in everything if line["reward_source"] == "judge"]
    assert len(everything) == N_TASKS and len(judged) == N_TASKS - N_HUMAN
    assert task_ids[N_HUMAN] in {line["task_id"] for line in judged}  # the cancelled grade did not count

    answer = get(backend, f"/projects/{project.id}/export?format=rlvr")
    assert answer.status_code == 200 and len(answer.text.splitlines()) == N_HUMAN
    assert httpx.get(backend.url + f"/projects/{project.id}/export", timeout=10).status_code == 401
    pairs = get(backend, f"/projects/{project.id}/export?format=preference").text.splitlines()
    assert pairs and all({"prompt", "chosen", "rejected"} == set(json.loads(p)) for p in pairs)

    # 6. Retrieve again: every task gets the trained judge's grade, under its version, and the grades are right.
    again, stored = labelstudio.retrieve_all(project.id, ml.id, task_ids)
    assert again == trained
    grades = [[p["result"][0]["value"]["choices"] for p in preds if p["model_version"] == trained] for preds in stored]
    assert grades == [[[row["reward"]]] for row in ROWS], grades
