"""The README's own commands: `make run` with the embedded model, a real Label Studio, and Ctrl-C.

The stack starts the way the README says (``make run``, which runs ``scripts/run_stack.sh``): Redis started by the
script with its append-only file, the embedded llama.cpp server with SmolLM2-135M, one RQ worker and gunicorn on
``.env``'s defaults (``testkit/runstack.py``). Only addresses change, so it never meets another run: free ports for
the web service, the model and Redis, and its own ``STACK_VAR`` for logs and Redis data. A real Label Studio 1.23.2
connects to it without credentials (the README's default), retrieves predictions for 3 tasks, and they are read back
through the SDK. Redis is restarted on its append-only file and the stack serves on; the RQ worker is killed and
``make run`` starts another. Then the test does what a
terminal does on Ctrl-C: SIGINT to the whole foreground process group; afterwards no process of the stack may be
left (Redis, a daemon in a session of its own, is found by its pid file) and none of its ports may answer.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from testkit.embedded import find_server_python
from testkit.processes import wait_for
from testkit.runstack import RunStack, listening
from tests.support.gating import need

pytestmark = [pytest.mark.labelstudio, pytest.mark.llm, pytest.mark.slow]

CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="topic" toName="text" choice="single">'
    '<Choice value="Billing"/><Choice value="Shipping"/><Choice value="Other"/></Choices></View>'
)
TEXTS = [
    "I was charged twice for my subscription this month.",
    "My parcel has been stuck in transit for nine days.",
    "Do you have a store in Berlin?",
]


def test_make_run_serves_label_studio_with_the_embedded_model_and_ctrl_c_stops_everything(labelstudio, tmp_path):
    need(find_server_python() is not None, "the embedded LLM venv (.venv-llm) is not built; run `make llm`")
    stack = RunStack(tmp_path / "var", {"LABEL_STUDIO_URL": labelstudio.url,
                                        "LABEL_STUDIO_API_KEY": labelstudio.token}).start()  # fmt: skip
    try:
        health = stack.wait_healthy()
        assert health["redis"] == "ok" and f":{stack.ports['llm']}/" in health["llm_base_url"], health
        roles = stack.roles()
        assert all(roles[r] for r in ("gunicorn master", "gunicorn worker", "rq worker", "llm server", "redis-server"))
        assert listening(stack.ports["redis"]) and listening(stack.ports["llm"])

        project, task_ids = labelstudio.create_project(CONFIG, [{"text": t} for t in TEXTS])
        ml = labelstudio.connect_backend(project.id, stack.url)
        version = labelstudio.ml_backend(ml.id)["model_version"]
        assert version.startswith("pv-"), version
        for attempt in (1, 2):  # the second retrieve must add nothing: each task holds the current version
            labelstudio.retrieve_predictions(project.id, task_ids)
            for task in task_ids:
                stored = labelstudio.predictions(task)
                assert len(stored) == 1, f"retrieve {attempt}, task {task}: {len(stored)} predictions: {stored}"
                (prediction,) = stored
                assert prediction["model_version"] == version, (prediction, version)
                chosen = [item["value"]["choices"] for item in prediction["result"] if item["from_name"] == "topic"]
                assert chosen and chosen[0][0] in {"Billing", "Shipping", "Other"}, prediction
        assert (stack.var / "log" / "worker.log").exists() and stack.redis_pidfile.exists()
        # Redis restarted on its append-only file (as an operator or a crash would): the stack keeps serving the same
        # version, and Ctrl-C must stop the new server too, not only the one the script started.
        before = stack.redis_pid()
        stack.restart_redis()
        assert stack.redis_pid() not in (None, before)
        assert wait_for(lambda: httpx.get(stack.url + "/health", timeout=5).json()["redis"] == "ok", 30, 0.5)
        assert labelstudio.ml_backend(ml.id)["model_version"] == version
        # The RQ worker killed (kill -9): make run starts another, as compose's restart policy would.
        (worker,) = wait_for(lambda: stack.roles()["rq worker"], 30, 0.5, "the RQ worker")  # restarted by now, maybe
        os.kill(worker, signal.SIGKILL)
        assert wait_for(lambda: [p for p in stack.roles()["rq worker"] if p != worker], 30, 0.5, "a new RQ worker")
    finally:
        status = stack.interrupt()
        left = stack.leftovers()
        stack.force_stop()
    assert status is not None, f"make run did not exit within 60 s of Ctrl-C:\n{stack.output()}"
    assert not left, "left running after Ctrl-C:\n" + "\n".join(left) + "\n" + stack.output()
    for name, port in stack.ports.items():
        assert not listening(port), f"{name} port {port} still answers after Ctrl-C:\n{stack.output()}"
