"""A real Label Studio (1.23.2, from its own venv) for end-to-end tests and benchmarks.

:meth:`LabelStudioServer.launch` starts one on a free loopback port with a fresh data dir, as ../shared/DESIGN.md §3
says (sqlite, legacy token, local ML URLs allowed); it takes about a minute to migrate. The server has ``url``,
``token``, an SDK ``client`` and small helpers for the calls the SDK gets wrong. The pytest fixtures over it
(``labelstudio``, ``start_backend``) are in ``tests/conftest.py``.

The Label Studio venv is ``$LS_VENV``, else ``<repo>/.venv-ls``, else the ``.venv-ls`` beside the venv running
pytest (so a git worktree can use the main checkout's install). When none exists the tests are skipped, or fail
under ``TEST_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from testkit.backendprocess import ROOT, ManagedProcess
from testkit.redisserver import free_port

START_TIMEOUT = float(os.environ.get("LS_START_TIMEOUT", "240"))  # 70 s idle, 110 s seen on a busy 2-core box
USERNAME = "admin@e2e.test"


def ls_venv() -> Path | None:
    candidates = [os.environ.get("LS_VENV"), ROOT / ".venv-ls", Path(sys.prefix).parent / ".venv-ls"]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if (path / "bin" / "label-studio").is_file():
            return path
    return None


class LabelStudioServer:
    """A Label Studio reachable at ``url`` with an admin's API ``token``; :meth:`launch` starts a fresh one."""

    def __init__(self, url: str, token: str, process: ManagedProcess | None = None, workdir: Path | None = None):
        self.url = url.rstrip("/")
        self.token = token
        self.process = process
        self.dir = workdir
        self.started_in: float | None = None
        self._client = None
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=120)

    @staticmethod
    def environment(data_dir: Path) -> dict[str, str]:
        """../shared/DESIGN.md §3's start-up environment, plus no version check against pypi.org (CI may be offline)."""
        return {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "ML_BLOCK_LOCAL_IP": "false",  # the backend runs on 127.0.0.1
            "SSRF_PROTECTION_ENABLED": "false",  # ...and so does its webhook
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
        }

    @classmethod
    def launch(cls, venv: Path, timeout: float = START_TIMEOUT) -> LabelStudioServer:
        """Start Label Studio from ``venv`` on a free port with a fresh data dir; wait until ``/health`` is UP."""
        port = free_port()
        token = secrets.token_hex(20)  # 40 characters, like a real legacy token
        workdir = Path(tempfile.mkdtemp(prefix="labelstudio-e2e-"))
        argv = [str(venv / "bin" / "label-studio"), "start", "--no-browser"]
        argv += ["--internal-host", "127.0.0.1", "--port", str(port)]
        argv += ["--username", USERNAME, "--password", secrets.token_urlsafe(12), "--user-token", token]
        argv += ["--enable-legacy-api-token"]
        began = time.monotonic()
        process = ManagedProcess("labelstudio", argv, cls.environment(workdir / "data"), workdir)
        server = cls(f"http://127.0.0.1:{port}", token, process, workdir)
        while time.monotonic() < began + timeout and process.alive():
            if server.healthy():
                server.started_in = time.monotonic() - began
                return server
            time.sleep(0.5)
        state = "exited" if not process.alive() else f"was not healthy after {timeout:.0f} s"
        tail = process.log_tail(60)
        server.stop()
        raise RuntimeError(f"Label Studio {state} on {server.url}; log tail:\n{tail}")

    def healthy(self) -> bool:
        try:
            response = httpx.get(self.url + "/health", timeout=2)
            return response.status_code == 200 and response.json().get("status") == "UP"
        except (httpx.HTTPError, ValueError):
            return False

    @property
    def version(self) -> str:
        """The server's release, e.g. ``1.23.2`` (also checks that the token is accepted)."""
        return self._json("GET", "/api/version")["release"]

    @property
    def client(self):
        """A ``label_studio_sdk.LabelStudio`` client (2.x) authenticated with the legacy token."""
        if self._client is None:
            from label_studio_sdk import LabelStudio

            self._client = LabelStudio(base_url=self.url, api_key=self.token, timeout=120)
        return self._client

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines) if self.process else ""

    def stop(self) -> None:
        """Stop what :meth:`launch` started; a server this object merely attached to is left alone."""
        if self.process:
            self.process.stop()
        self.http.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers for what every e2e test does ------------------------------------------------------------------

    def create_project(self, label_config: str, tasks: list[dict], title: str | None = None):
        """A project with ``label_config`` and one task per ``tasks`` item (task ``data``); returns (project, ids)."""
        project = self.client.projects.create(title=title or f"e2e {uuid.uuid4().hex[:8]}", label_config=label_config)
        self.client.projects.import_tasks(id=project.id, request=[{"data": t} for t in tasks], commit_to_project=True)
        task_ids = sorted(t.id for t in self.client.tasks.list(project=project.id))
        return project, task_ids

    def connect_backend(
        self,
        project_id: int,
        url: str,
        *,
        basic_auth: tuple[str, str] | None = None,
        interactive: bool = True,
        extra_params: dict | None = None,
    ):
        """Add the backend as the project's model (Label Studio calls /health and /setup before it answers).

        ``extra_params`` is the Connect Model dialog's *Extra params* JSON."""
        auth = {}
        if basic_auth:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        if extra_params is not None:
            auth["extra_params"] = extra_params
        return self.client.ml.create(
            project=project_id, url=url, title="prompt-policy", is_interactive=interactive, **auth
        )

    def set_extra_params(
        self, ml_id: int, project_id: int, url: str, extra_params: dict, *, basic_auth: tuple[str, str] | None = None
    ):
        """Change the model's *Extra params*, as the Connect Model dialog's Save does; Label Studio calls ``/setup``.

        Label Studio 1.23.2 re-checks the backend on every PATCH and answers a 500 without ``url`` and ``project``,
        and a 400 without the basic-auth fields, so they are sent again."""
        auth = {}
        if basic_auth:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        return self.client.ml.update(id=ml_id, url=url, project=project_id, extra_params=extra_params, **auth)

    def ml_backend(self, ml_id: int) -> dict:
        """``GET /api/ml/{id}``: state and the ``model_version`` Label Studio took from ``/setup``."""
        return self._json("GET", f"/api/ml/{ml_id}")

    def retrieve_predictions(self, project_id: int, task_ids: list[int] | None = None) -> dict:
        """The Data Manager action ``retrieve_tasks_predictions`` (SDK's ``ml.predict_all_tasks`` 404s on OSS)."""
        selected = {"all": False, "included": task_ids} if task_ids else {"all": True, "excluded": []}
        return self._json(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": selected},
        )

    def predictions(self, task_id: int) -> list[dict]:
        return [p.model_dump(mode="json") for p in self.client.predictions.list(task=task_id)]

    def connect_with_secret(self, project_id: int, url: str, basic_auth: tuple[str, str], secret: str):
        """Connect the backend with basic auth and add the ``X-Webhook-Secret`` header users add to its webhook."""
        ml = self.connect_backend(project_id, url, basic_auth=basic_auth)
        self.set_webhook_headers(project_id, url + "/webhook", {"X-Webhook-Secret": secret})
        return ml

    def retrieve_all(self, project_id: int, ml_id: int, task_ids: list[int]) -> tuple[str, list[list[dict]]]:
        """Retrieve predictions for every task; (the backend's model version in LS, each task's predictions)."""
        self.retrieve_predictions(project_id)
        version = self.ml_backend(ml_id)["model_version"]
        return version, [self.predictions(t) for t in task_ids]

    def interactive_annotating(self, ml_id: int, task_id: int, context: dict | None = None) -> dict:
        """``POST /api/ml/{id}/interactive-annotating``; raw HTTP because the SDK's call returns None."""
        return self._json("POST", f"/api/ml/{ml_id}/interactive-annotating", json={"task": task_id, "context": context})

    def project_webhooks(self, project_id: int) -> list[dict]:
        """The project's webhooks (the list API returns the whole organisation's)."""
        return [w for w in self._json("GET", "/api/webhooks/") if w.get("project") == project_id]

    def set_webhook_headers(self, project_id: int, url: str, headers: dict[str, str]) -> dict:
        """Headers for the project's webhook to ``url``, as a user sets them in Settings → Webhooks → Add Header."""
        (hook,) = [w for w in self.project_webhooks(project_id) if w["url"] == url]
        return self._json("PATCH", f"/api/webhooks/{hook['id']}/", json={"headers": headers})

    def _json(self, method: str, path: str, **kwargs):
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()


def main() -> None:
    """``python -m testkit.labelstudio``: start one Label Studio and keep it up, for quick e2e iterations."""
    venv = ls_venv()
    if venv is None:
        raise SystemExit("Label Studio is not installed: run scripts/install_labelstudio.sh or set LS_VENV")
    server = LabelStudioServer.launch(venv)
    print(f"Label Studio {server.version} up after {server.started_in:.0f} s. In another shell:")
    print(f"  export E2E_LABEL_STUDIO_URL={server.url} E2E_LABEL_STUDIO_TOKEN={server.token}")
    print("Ctrl-C (or SIGTERM) stops it.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the finally below
    try:
        while server.process.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
