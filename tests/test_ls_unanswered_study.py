"""What Label Studio 1.23.2 does with each way of saying "no answer yet" for a task (issue 10, part 1).

A scripted ML backend on loopback answers ``/predict`` per task, by the task's ``mode``; Label Studio is real. The
findings, which docs/tags.md's "Tasks without an answer" section repeats:

- ``empty``: ``{"result": [], "model_version": <current>}`` is stored as a real prediction, and Label Studio never
  asks for that task again while the version stays current (the placeholder bug this issue is about);
- ``other``: the same with another ``model_version`` is stored too (a visible empty prediction in the task), and
  the task is asked for again, because it lacks one of the current version;
- ``none``: an empty list for that task (zero predictions) keeps the one-result-per-task count, stores nothing,
  and the task is asked for again on the next Retrieve Predictions. This is what the backend does;
- ``bad``: a result the serializer refuses (``"result": null``, or a score that is not a number) fails the whole
  batch with a 400: no task gets anything;
- ``text``: ``"result": "x"`` is not refused but stored as a choice labelled ``x``, outside the label set;
- a current-version placeholder deleted through the API is asked for again, so deleting later works but leaves a
  window in which the task looks predicted.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="yes"/><Choice value="no"/></Choices></View>'
)
VERSION = "study-v1"
GOOD = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["yes"]}}]


class ScriptedBackend:
    """``/health``, ``/setup`` and ``/predict`` of an ML backend whose per-task answer is the task's ``mode``."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []  # the modes of each /predict batch, in order
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"status": "UP", "model_class": "Scripted"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.startswith("/setup"):
                    return self._send({"model_version": VERSION})
                if not self.path.startswith("/predict"):
                    return self._send({})
                modes = [t["data"]["mode"] for t in body.get("tasks", [])]
                backend.asked.append(modes)
                self._send({"results": [backend.answer(m) for m in modes], "model_version": VERSION})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(mode: str):
        return {
            "ok": {"result": GOOD, "score": 0.9, "model_version": VERSION},
            "empty": {"result": [], "score": 0.0, "model_version": VERSION},
            "other": {"result": [], "score": 0.0, "model_version": VERSION + "-unfinished"},
            "none": [],
            "bad": {"result": None, "score": 0.0, "model_version": VERSION},
            "text": {"result": "x", "score": 0.0, "model_version": VERSION},
        }[mode]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def scripted():
    backend = ScriptedBackend()
    yield backend
    backend.server.shutdown()


def stored(labelstudio, task_ids) -> dict[int, list[tuple[str, int]]]:
    """Per task: (model_version, number of result items) of every prediction Label Studio holds."""
    return {t: [(p["model_version"], len(p["result"])) for p in labelstudio.predictions(t)] for t in task_ids}


def test_what_label_studio_keeps_and_asks_again(labelstudio, scripted):
    modes = ["ok", "empty", "other", "none", "text"]
    project, ids = labelstudio.create_project(CONFIG, [{"text": m, "mode": m} for m in modes])
    labelstudio.connect_backend(project.id, scripted.url, interactive=False)
    labelstudio.retrieve_predictions(project.id)
    assert scripted.asked == [modes]
    by_mode = dict(zip(modes, ids, strict=True))
    assert stored(labelstudio, ids) == {
        by_mode["ok"]: [(VERSION, 1)],
        by_mode["empty"]: [(VERSION, 0)],  # a placeholder under the current version
        by_mode["other"]: [(VERSION + "-unfinished", 0)],  # stored, visible, but not current
        by_mode["none"]: [],  # nothing stored
        by_mode["text"]: [(VERSION, 1)],
    }
    (as_label,) = labelstudio.predictions(by_mode["text"])
    assert as_label["result"][0]["value"] == {"choices": ["x"]}  # a label outside the set
    # Retrieve again: only tasks without a current-version prediction are sent.
    labelstudio.retrieve_predictions(project.id)
    assert scripted.asked[1] == ["other", "none"]

    # Deleting the placeholder through the API makes Label Studio ask for the task again.
    (placeholder,) = labelstudio.predictions(by_mode["empty"])
    labelstudio.client.predictions.delete(id=placeholder["id"])
    labelstudio.retrieve_predictions(project.id)
    assert sorted(scripted.asked[2]) == ["empty", "none", "other"]


def test_one_refused_result_loses_the_whole_batch(labelstudio, scripted):
    project, ids = labelstudio.create_project(CONFIG, [{"text": m, "mode": m} for m in ("ok", "bad")])
    labelstudio.connect_backend(project.id, scripted.url, interactive=False)
    with pytest.raises(AssertionError, match="400"):  # the Data Manager action answers "Validation error"
        labelstudio.retrieve_predictions(project.id)
    assert scripted.asked == [["ok", "bad"]]
    assert stored(labelstudio, ids) == {ids[0]: [], ids[1]: []}
