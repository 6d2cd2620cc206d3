"""The built images, started: what ``docker compose up`` runs, from the images ``make image-test`` just built.

``scripts/image_test.sh`` builds the images with buildah and runs this file with ``LSML_IMAGE`` naming the app
image (and ``LSML_LLM_IMAGE`` the embedded model's). Each command runs in its own container from the image
(buildah's chroot isolation, on the host's network), configured through the environment as compose's ``env_file``
does, against a redis-server on loopback. The checks are what a user of the stack sees:

- web (the image's CMD, ``gunicorn _wsgi:app``) and worker (``python -m optimizer worker``) with the scripted LLM
  and a scripted Label Studio: ``/health`` answers and both compose healthchecks (``scripts/healthcheck.py``) pass
  in the containers; the recorded Label Studio ``/setup`` and ``/predict`` get one answer per task with labels from
  the config only; ``START_TRAINING`` queues a job that the worker container runs, reading the annotations from
  Label Studio and promoting a better policy that ``/setup`` then reports;
- the llm image's own command (llama.cpp + SmolLM2-135M) serves the model, and the web container answers the
  recorded ``/predict`` with it, as the ``embedded`` compose profile does;
- stopping the commands the way compose does (SIGTERM) leaves no process behind.

Not part of ``make test`` (pyproject deselects the ``image`` marker): it needs buildah and the built images.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from optimizer.runtime.versions import policy_version
from testkit.backendprocess import ManagedProcess
from testkit.constants import SUPPORT_CONFIG
from testkit.fakellm import FakeLLM
from testkit.fakels import FakeLabelStudio
from testkit.lspayloads import SAMPLES, uid, webhook
from testkit.processes import descendants, kill_tree, wait_for
from testkit.redisserver import free_port
from testkit.training_stack import AUTH, MAGIC_WORD, PROJECT_ID, gold_tasks, magic_responder
from tests.support.gating import need

pytestmark = pytest.mark.image

IMAGE = os.environ.get("LSML_IMAGE", "")
LLM_IMAGE = os.environ.get("LSML_LLM_IMAGE", "")
ALLOWED = {"Greeting", "Account_Verification", "Technical_Support", "Information_Request", "Other"}  # the recording's


def recorded(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())["request_json"]


def image_command(image: str) -> list[str]:
    """The image's CMD, as ``docker run`` would start it."""
    config = json.loads(buildah("inspect", "--type", "image", image))
    return config["Docker"]["config"]["Cmd"] or config["OCIv1"]["config"]["Cmd"]


def buildah(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"buildah {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}"
    return done.stdout.strip()


def running(pid: int) -> str:
    """The command line of ``pid`` if it is alive and not a zombie (one waiting to be reaped is gone), else ''."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, IndexError):
        return ""
    return "" if state in ("Z", "X") else command or "?"


class Container:
    """One working container of the image; its commands run with ``buildah run`` (chroot, host network)."""

    def __init__(self, image: str, role: str, env: dict[str, str], logs: Path) -> None:
        self.name = f"lsml-test-{role}-{uuid.uuid4().hex[:6]}"
        self.id = buildah("from", "--pull=never", "--name", self.name, image)
        self.env, self.logs, self.processes = env, logs, []

    def _argv(self, command: list[str]) -> list[str]:
        return ["buildah", "run", "--isolation", "chroot", *(f"--env={k}={v}" for k, v in self.env.items()),
                self.id, "--", *command]  # fmt: skip

    def start(self, command: list[str]) -> ManagedProcess:
        process = ManagedProcess(self.name, self._argv(command), dict(os.environ), self.logs)
        self.processes.append(process)
        return process

    def run(self, command: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(command), capture_output=True, text=True, timeout=timeout)

    def stop(self) -> list[int]:
        """SIGTERM each command's process group, as ``docker stop`` does; returns the pids still alive after it."""
        tree = [pid for process in self.processes for pid in [process.pid, *descendants(process.pid)]]
        for process in self.processes:
            process.stop(grace=20)
        time.sleep(0.5)
        left = [f"{pid} {running(pid)}" for pid in tree if running(pid)]
        for pid in tree:  # so a failing test still leaves nothing running
            if running(pid):
                kill_tree(pid)
        return left

    def remove(self) -> None:
        buildah("rm", self.id)


@pytest.fixture
def containers(tmp_path):
    made: list[Container] = []

    def make(role: str, env: dict[str, str], image: str = IMAGE) -> Container:
        container = Container(image, role, env, tmp_path)
        made.append(container)
        return container

    yield make
    for container in made:
        container.stop()
        container.remove()


def app_env(redis_url: str, namespace: str, port: int, **more: str) -> dict[str, str]:
    """What .env and .env.compose give the app containers, pointed at this test's services."""
    return {
        "PORT": str(port),
        "WORKERS": "2",
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": namespace,
        "RQ_QUEUE": namespace,
        "LLM_API_KEY": "not-needed",
        "EMBEDDED_LLM": "0",
        "BASIC_AUTH_USER": AUTH[0],
        "BASIC_AUTH_PASS": AUTH[1],
        "LOG_FORMAT": "text",
        **more,
    }


def serving(process: ManagedProcess, url: str, timeout: float = 90) -> dict:
    """Wait for ``/health`` from a web container; its JSON."""

    def healthy():
        assert process.alive(), f"web exited:\n{process.log_tail()}"
        try:
            answer = httpx.get(url + "/health", timeout=2)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    return wait_for(healthy, timeout, 0.3, what=f"/health from the image on {url}")


def recorded_predict(client: httpx.Client) -> list[dict]:
    """The recorded Label Studio /setup and /predict: one answer per task, under /setup's version, labels in the set."""
    version = client.post("/setup", json=recorded("setup.json")).json()["model_version"]
    request = recorded("predict.retrieve_predictions.json")
    answer = client.post("/predict", json=request)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == len(request["tasks"])
    for result in results:
        assert result["model_version"] == version and 0.0 <= result["score"] <= 1.0
        for item in result["result"]:
            assert item["to_name"] == "chat"
            if item["type"] == "choices":
                assert set(item["value"]["choices"]) <= ALLOWED, item
    return results


def test_the_app_image_serves_predicts_and_trains(redis_server, namespace, containers, tmp_path):
    need(bool(IMAGE), "LSML_IMAGE names no built image; run `make image-test`, which builds it and runs this test")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with FakeLLM(magic_responder) as llm, FakeLabelStudio(SUPPORT_CONFIG, gold_tasks()) as ls:
        env = app_env(redis_server.url, namespace, port, LLM_BASE_URL=llm.base_url, LLM_MODEL="fake",
                      LABEL_STUDIO_URL=ls.url, LABEL_STUDIO_API_KEY=ls.token)  # fmt: skip
        web_box, worker_box = containers("web", env), containers("worker", env)
        assert image_command(IMAGE) == ["gunicorn", "_wsgi:app"]  # compose's web command is the image's CMD
        web = web_box.start(image_command(IMAGE))
        worker = worker_box.start(["python", "-m", "optimizer", "worker"])  # compose's worker command

        health = serving(web, url)
        assert health["status"] == "UP" and health["redis"] == "ok", health
        assert web_box.run(["python", "scripts/healthcheck.py", "web"]).returncode == 0
        worker_ok = lambda: worker_box.run(["python", "scripts/healthcheck.py", "worker"]).returncode == 0  # noqa: E731
        wait_for(worker_ok, 60, 1, what=f"the worker's healthcheck; worker log:\n{worker.log_tail()}")

        client = httpx.Client(base_url=url, auth=AUTH, timeout=30)
        assert httpx.post(url + "/predict", json={}, timeout=10).status_code == 401  # auth holds in the image
        results = recorded_predict(client)
        assert len(llm.requests) >= len(results) and all(r["result"] for r in results)  # the scripted LLM answered

        # START_TRAINING: the worker container reads the annotations from Label Studio and promotes a better policy.
        project = uid(PROJECT_ID)
        before = client.post("/setup", json={"project": project, "schema": SUPPORT_CONFIG}).json()["model_version"]
        queued = client.post("/webhook", json=webhook("START_TRAINING", PROJECT_ID, SUPPORT_CONFIG))
        assert queued.status_code == 201, queued.text
        job_id = queued.json()["job"]

        def finished():
            view = client.get(f"/jobs/{job_id}").json()
            return view if view["status"] in ("finished", "failed") else None

        view = wait_for(finished, 180, 0.5, what=f"job {job_id}; worker log:\n{worker.log_tail()}")
        assert view["status"] == "finished", view
        assert view["result"]["promoted"] is True and view["result"]["gold"]["used"] == 12, view["result"]
        after = client.post("/setup", json={"project": project, "schema": SUPPORT_CONFIG}).json()["model_version"]
        # The served version names the policy that answers (plus the config's and the model's parts).
        assert policy_version(after) == view["result"]["live_after"] != policy_version(before)
        live = client.get(f"/projects/{PROJECT_ID}/policies/{view['result']['live_after']}").json()
        assert MAGIC_WORD in json.dumps(live), live  # the proposer's rule, now what answers

        # Stopped as compose stops a service: nothing of either command survives.
        assert web_box.stop() == [] and worker_box.stop() == []
        with pytest.raises(httpx.HTTPError):
            httpx.get(url + "/health", timeout=2)


def test_the_llm_image_serves_the_embedded_model_to_the_app_image(redis_server, namespace, containers):
    need(bool(IMAGE) and bool(LLM_IMAGE), "LSML_IMAGE / LSML_LLM_IMAGE name no built images; run `make image-test`")
    command = image_command(LLM_IMAGE)
    assert command[:3] == ["/opt/llm/bin/python", "-m", "llama_cpp.server"], command
    llm_port, port = free_port(), free_port()
    # The image's own command on a free loopback port (the host network is shared; 8081 may be taken).
    command[command.index("--port") + 1], command[command.index("--host") + 1] = str(llm_port), "127.0.0.1"
    llm_box = containers("llm", {}, LLM_IMAGE)
    llm = llm_box.start(command)

    def models():
        assert llm.alive(), f"llm exited:\n{llm.log_tail()}"
        try:
            answer = httpx.get(f"http://127.0.0.1:{llm_port}/v1/models", timeout=2)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    served = wait_for(models, 120, 0.5, what=f"the llm image's /v1/models; log:\n{llm.log_tail()}")
    assert [m["id"] for m in served["data"]] == ["smollm2-135m"], served

    url = f"http://127.0.0.1:{port}"
    env = app_env(redis_server.url, namespace, port, LLM_BASE_URL=f"http://127.0.0.1:{llm_port}/v1",
                  LLM_MODEL="smollm2-135m", LLM_PROVIDER="llamacpp", LLM_TIMEOUT="120")  # fmt: skip
    web_box = containers("web", env)
    web = web_box.start(image_command(IMAGE))
    assert serving(web, url)["status"] == "UP"
    results = recorded_predict(httpx.Client(base_url=url, auth=AUTH, timeout=120))
    # The 135M model is tiny (it tends to list every label), but it answered through the app: tokens were spent.
    metrics = httpx.get(url + "/metrics", auth=AUTH, timeout=10).text
    completion = [line for line in metrics.splitlines() if line.startswith("lsml_llm_tokens_total{")
                  and 'kind="completion"' in line and 'role="labeller"' in line]  # fmt: skip
    assert completion and float(completion[0].rsplit(" ", 1)[1]) > 0, metrics[-3000:]
    assert any(r["result"] for r in results), json.dumps(results)[:2000]  # it answered something, from the set
    assert llm_box.stop() == [] and web_box.stop() == []
