"""A scripted OpenAI-compatible chat server on loopback, for deterministic LLM answers over real HTTP.

Tests and benchmarks talk to it through the real ``openai`` SDK, so requests, retries, timeouts and structured-output
negotiation are exercised end to end. Behaviour is set per server:

- ``responder(body) -> Reply``: decides each answer (default: :func:`keyword_responder`);
- ``delay``: seconds to wait before answering every request (the 200 ms LLM of the benchmarks);
- ``reject_json_schema``: answer OpenAI's ``json_schema`` form with a 500, as llama.cpp's server does;
- ``faults``: a queue of replies served before the responder (a 429, a 503, a hang...);
- ``Reply.body``: a 200 whose body is not a chat completion (HTML, no ``choices``, null content).

Every request body is recorded in ``requests``; ``max_active`` is the most requests seen in flight at once, and
``abandoned`` counts answers whose client had already closed the connection.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    delay: float = 0.0
    headers: dict = field(default_factory=dict)
    logprob: float | None = -0.05  # per token; None: no logprobs in the answer
    error: str = ""
    finish_reason: str = "stop"  # "length": the answer was cut at max_tokens
    # Sent as the whole 200 body instead of a chat completion: a broken provider (an HTML error page, an empty
    # ``choices`` list, a completion whose content is null).
    body: bytes | dict | None = None


def response_schema(body: dict) -> dict | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    if fmt.get("type") == "json_object":
        return fmt.get("schema")
    return None


def last_user(body: dict) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def system_text(body: dict) -> str:
    messages = body.get("messages", [])
    return str(messages[0].get("content", "")) if messages and messages[0].get("role") == "system" else ""


def labels_from_system(body: dict) -> dict[str, tuple[list[str], bool]]:
    """Control → (labels, multiple), read back from the format spec lines the backend writes."""
    out = {}
    for line in system_text(body).splitlines():
        m = re.match(r'- "([^"]+)": (exactly one of|one or more of) (.*)$', line)
        if m:
            labels = [json.loads(x) for x in re.findall(r'"(?:[^"\\]|\\.)*"', m.group(3))]
            out[m.group(1)] = (labels, m.group(2) == "one or more of")
    return out


def keyword_answer(body: dict, fallback_first: bool = True) -> dict:
    """Pick every label whose name appears in the input (case-insensitive); else the first label."""
    text = last_user(body).lower()
    answer: dict = {}
    for name, (labels, multiple) in labels_from_system(body).items():
        hits = [label for label in labels if label.lower().replace("_", " ") in text or label.lower() in text]
        if not hits and fallback_first:
            hits = labels[:1]
        answer[name] = hits if multiple else (hits[0] if hits else "")
    return answer


def keyword_responder(body: dict) -> Reply:
    return Reply(json.dumps(keyword_answer(body)))


class FakeLLM:
    def __init__(
        self,
        responder: Callable[[dict], Reply] = keyword_responder,
        *,
        delay: float = 0.0,
        reject_json_schema: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.responder = responder
        self.delay = delay
        self.reject_json_schema = reject_json_schema
        self.faults: deque[Reply] = deque()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.abandoned = 0  # answers the client had hung up on before they were written
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.faults.clear()
            self.max_active = 0

    def _reply_for(self, body: dict) -> Reply:
        with self._lock:
            self.requests.append(body)
            if self.faults:
                return self.faults.popleft()
        fmt = (body.get("response_format") or {}).get("type")
        if self.reject_json_schema and fmt == "json_schema":
            return Reply(status=500, error="Unsupported response_format type json_schema")
        return self.responder(body)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms per call.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)

            def _send_raw(self, body: bytes | dict, headers: dict) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                kind = "application/json" if isinstance(body, dict) else headers.get("Content-Type", "text/html")
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.headers.append(dict(self.headers))
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                try:
                    reply = fake._reply_for(body)
                    wait = fake.delay + reply.delay
                    if wait:
                        time.sleep(wait)
                finally:
                    # Out of flight before the answer is written: a client that has read it may release its slot
                    # and start its next call before this thread runs again, and that call must not count as a
                    # second one in flight (a loaded machine made a limit of 3 read as 4).
                    with fake._lock:
                        fake.active -= 1
                try:
                    if reply.status != 200:
                        message = reply.error or f"fake error {reply.status}"
                        self._send(reply.status, {"error": {"message": message, "type": "fake"}}, reply.headers)
                        return
                    if reply.body is not None:
                        self._send_raw(reply.body, reply.headers)
                        return
                    self._send(200, completion(body, reply), reply.headers)
                except (BrokenPipeError, ConnectionResetError):
                    with fake._lock:
                        fake.abandoned += 1

        return Handler


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+|\s+|[^\w\s]", text) or [text]


def completion(body: dict, reply: Reply) -> dict:
    tokens = _tokens(reply.content) if reply.content else []
    logprobs = None
    if body.get("logprobs") and reply.logprob is not None:
        logprobs = {
            "content": [{"token": t, "logprob": reply.logprob, "bytes": None, "top_logprobs": []} for t in tokens]
        }
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "logprobs": logprobs,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        },
    }
