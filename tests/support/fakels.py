"""A scripted stand-in for the three Label Studio API calls the worker makes, over real HTTP, for fast tests.

Response shapes are the ones Label Studio 1.23.2 returns (recorded against a real server); the end-to-end test
in ``test_training_e2e.py`` runs the same worker code against the real thing. It serves:

- ``GET /api/projects/<id>/``: ``{id, title, label_config}``;
- ``GET /api/tasks/?project=&fields=all&page=&page_size=[&query=]``: ``{total, tasks}``, 404 past the last page
  (``query``'s ``selectedItems`` picks task ids, as Label Studio's Data Manager does);
- ``POST /api/projects/<id>/import/predictions``: ``{created}``; the predictions are attached to the tasks.

Control knobs: ``token`` (``Authorization: Token <token>`` required, else 401), ``hold`` (an Event the task listing
waits on, to keep a job inside its run), ``fail_tasks`` (answer the listing with this HTTP status), ``requests``
(every path served, for assertions), ``listings`` (how many times a task listing started at page 1).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeLabelStudio:
    def __init__(self, label_config: str, tasks: list[dict], *, project_id: int = 1, token: str = "t" * 40) -> None:
        self.label_config = label_config
        self.project_id = project_id
        self.token = token
        self.tasks = [{"predictions": [], "annotations": [], **t} for t in tasks]
        self.hold: threading.Event | None = None
        self.fail_tasks: int | None = None
        self.requests: list[str] = []
        self.listings = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeLabelStudio:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.hold is not None:
            self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def predictions(self) -> list[dict]:
        with self._lock:
            return [p for t in self.tasks for p in t["predictions"]]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Token {fake.token}":
                    return True
                self._send(401, {"detail": "Authentication credentials were not provided."})
                return False

            def do_GET(self):
                url = urlparse(self.path)
                fake.requests.append(url.path)
                if not self._authorized():
                    return
                if url.path == f"/api/projects/{fake.project_id}/":
                    self._send(200, {"id": fake.project_id, "title": "fake", "label_config": fake.label_config})
                elif url.path == "/api/tasks/":
                    self._tasks(parse_qs(url.query))
                else:
                    self._send(404, {"detail": "Not found."})

            def _tasks(self, query: dict) -> None:
                page = int(query.get("page", ["1"])[0])
                size = int(query.get("page_size", ["100"])[0])
                if page == 1:  # one listing = one run reading the project
                    with fake._lock:
                        fake.listings += 1
                    if fake.hold is not None:
                        fake.hold.wait(60)
                if fake.fail_tasks:
                    self._send(fake.fail_tasks, {"detail": "scripted failure"})
                    return
                selected = json.loads(query.get("query", ["{}"])[0]).get("selectedItems") or {}
                with fake._lock:
                    tasks = fake.tasks
                    if selected.get("all") is False:
                        tasks = [t for t in tasks if t["id"] in set(selected.get("included") or [])]
                    chunk = tasks[(page - 1) * size : page * size]
                    if not chunk:
                        self._send(404, {"detail": "Invalid page."})
                        return
                    self._send(200, {"total": len(tasks), "tasks": json.loads(json.dumps(chunk))})

            def do_POST(self):
                url = urlparse(self.path)
                fake.requests.append(url.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if not self._authorized():
                    return
                if url.path != f"/api/projects/{fake.project_id}/import/predictions":
                    self._send(404, {"detail": "Not found."})
                    return
                with fake._lock:
                    by_id = {t["id"]: t for t in fake.tasks}
                    for prediction in body:
                        by_id[prediction["task"]]["predictions"].append(prediction)
                self._send(201, {"created": len(body)})

        return Handler
