"""A scripted stand-in for the three Label Studio API calls the worker makes, over real HTTP, for fast tests.

Response shapes are the ones Label Studio 1.23.2 returns (recorded against a real server); the end-to-end test
in ``test_training_e2e.py`` runs the same worker code against the real thing. It serves:

- ``GET /api/projects/<id>/``: ``{id, title, label_config}``;
- ``GET /api/tasks/?project=&fields=&include=&page=&page_size=[&query=]``: ``{total, tasks}``, 404 past the last
  page (``query``'s ``selectedItems`` picks task ids and its ``filters`` the tasks lacking a model version, with ids
  above one, without annotations, as Label Studio's Data Manager does; ``include`` names the fields sent, and
  predictions and annotations come only with ``fields=all``);
- ``POST /api/projects/<id>/import/predictions``: ``{created}``; the predictions are attached to the tasks.

Control knobs: ``token`` (``Authorization: Token <token>`` required, else 401), ``hold`` (an Event the task listing
waits on, to keep a job inside its run), ``fail_tasks`` (answer the listing with this HTTP status), ``requests``
(every path served, for assertions), ``listings`` (how many times a task listing started at page 1),
``post_faults`` (a queue of :class:`PostFault`, one consumed per prediction import), ``task_faults`` (the
same, for imports holding a given task) and ``go_down()`` /
``come_back()`` (stop listening on the port, so connections are refused, then listen on the same port again).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class PostFault(Enum):
    """How one prediction import goes wrong. The last two are the dangerous ones: Label Studio committed the
    predictions, then the client saw an error (a proxy's 502 after the commit, a connection cut before the answer),
    so a blind retry would store every prediction twice."""

    REJECT = "reject"  # 500, nothing stored
    STORE_THEN_500 = "store_then_500"  # stored, then 500
    STORE_THEN_DROP = "store_then_drop"  # stored, then the connection closes with no answer


def _matches(task: dict, filters: dict | None) -> bool:
    """The Data Manager filters the backend sends (``and`` of: a model version not among the task's predictions',
    a substring test like Label Studio's; id greater than; annotation counts equal to)."""
    for item in (filters or {}).get("items", []):
        field, operator, value = item["filter"].removeprefix("filter:tasks:"), item["operator"], item["value"]
        if field == "predictions_model_versions" and operator == "not_contains":
            versions = [p.get("model_version") or "" for p in task["predictions"]]
            if any(v in have for v in value for have in versions):
                return False
        elif field == "id" and operator == "greater":
            if not task["id"] > value:
                return False
        elif field in ("total_annotations", "cancelled_annotations") and operator == "equal":
            cancelled = field == "cancelled_annotations"
            if sum(1 for a in task["annotations"] if bool(a.get("was_cancelled")) == cancelled) != value:
                return False
        else:
            raise ValueError(f"the fake Label Studio does not know the filter {item}")
    return (filters or {}).get("conjunction", "and") == "and"


def _shown(task: dict, include: str, all_fields: bool) -> dict:
    """What Label Studio sends of a task: predictions and annotations only with ``fields=all``, and only the
    fields named in ``include`` when it is given (drf-flex-fields' sparse fields)."""
    out = dict(task) if all_fields else {k: v for k, v in task.items() if k not in ("predictions", "annotations")}
    if include:
        names = set(include.split(","))
        out = {k: v for k, v in out.items() if k in names}
    return out


class FakeLabelStudio:
    def __init__(self, label_config: str, tasks: list[dict], *, project_id: int = 1, token: str = "t" * 40) -> None:
        self.label_config = label_config
        self.project_id = project_id
        self.token = token
        self.tasks = [{"predictions": [], "annotations": [], **t} for t in tasks]
        self.hold: threading.Event | None = None
        self.fail_tasks: int | None = None
        self.fail_from_page: int | None = None  # listing pages from this one on answer 500 (a fault mid-listing)
        self.max_page_size = 100  # Label Studio's own cap; smaller makes a short project span several pages
        self.requests: list[str] = []
        self.listings = 0
        self.post_faults: deque[PostFault] = deque()
        # Faults for the imports that hold one task (one chunk's import): task id -> faults, one consumed per import.
        self.task_faults: dict[int, deque[PostFault]] = {}
        self.imports = 0  # prediction import requests received, failed ones included
        self.reads = 0  # task listing requests (any page)
        self.listing_params: list[dict] = []  # each listing's include, fields, query and page, for assertions
        self._open: set = set()  # client connections being served (keep-alive ones outlive a listener's close)
        self._lock = threading.Lock()
        self._listen(0)
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"  # kept while down: the address clients are refused at

    def _listen(self, port: int) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return self._url

    def __enter__(self) -> FakeLabelStudio:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def go_down(self) -> None:
        """Label Studio unreachable: nothing listens on the port any more (connection refused), and connections
        kept alive from before are cut, as when the process dies."""
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):  # already closed by the client
                    conn.shutdown(2)

    def come_back(self) -> None:
        self._listen(int(self._url.rsplit(":", 1)[1]))
        self._thread.start()

    def predictions(self) -> list[dict]:
        with self._lock:
            return [p for t in self.tasks for p in t["predictions"]]

    def holding(self, version: str) -> tuple[int, int]:
        """(tasks holding a prediction of ``version``, predictions of it in all): cheap enough to poll."""
        with self._lock:
            counts = [sum(1 for p in t["predictions"] if p.get("model_version") == version) for t in self.tasks]
        return sum(1 for n in counts if n), sum(counts)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with fake._lock:
                    fake._open.add(self.connection)

            def finish(self):
                with fake._lock:
                    fake._open.discard(self.connection)
                super().finish()

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
                size = min(int(query.get("page_size", ["100"])[0]), fake.max_page_size)
                if page == 1:  # one listing = one run reading the project
                    with fake._lock:
                        fake.listings += 1
                    if fake.hold is not None:
                        fake.hold.wait(60)
                if fake.fail_tasks or (fake.fail_from_page and page >= fake.fail_from_page):
                    self._send(fake.fail_tasks or 500, {"detail": "scripted failure"})
                    return
                asked = json.loads(query.get("query", ["{}"])[0])
                selected = asked.get("selectedItems") or {}
                include = query.get("include", [""])[0]
                all_fields = query.get("fields", [""])[0] == "all"
                with fake._lock:
                    fake.reads += 1
                    fake.listing_params.append({"include": include, "fields": query.get("fields", [""])[0],
                                                "query": asked, "page": page})  # fmt: skip
                    tasks = fake.tasks
                    if selected.get("all") is False:
                        tasks = [t for t in tasks if t["id"] in set(selected.get("included") or [])]
                    tasks = [t for t in tasks if _matches(t, asked.get("filters"))]
                    chunk = tasks[(page - 1) * size : page * size]
                    if not chunk and page > 1:
                        self._send(404, {"detail": "Invalid page."})
                        return
                    shown = [_shown(t, include, all_fields) for t in chunk]
                    self._send(200, {"total": len(tasks), "tasks": json.loads(json.dumps(shown))})

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
                    fake.imports += 1
                    fault = fake.post_faults.popleft() if fake.post_faults else None
                    for task in (p["task"] for p in body):
                        if fault is None and fake.task_faults.get(task):
                            fault = fake.task_faults[task].popleft()
                    if fault is PostFault.REJECT:
                        self._send(500, {"detail": "scripted failure"})
                        return
                    by_id = {t["id"]: t for t in fake.tasks}
                    for prediction in body:
                        by_id[prediction["task"]]["predictions"].append(prediction)
                if fault is PostFault.STORE_THEN_500:
                    self._send(500, {"detail": "scripted failure after the commit"})
                elif fault is PostFault.STORE_THEN_DROP:
                    self.close_connection = True
                    self.connection.shutdown(2)  # no status line: the client sees the connection end
                else:
                    self._send(201, {"created": len(body)})

        return Handler
