"""Logs: JSON lines with request ids, switchable to text, and never an API key or a Basic-auth secret."""

from __future__ import annotations

import base64
import io
import json
import logging
import urllib.error
import urllib.request

import pytest

from _wsgi import create_app
from optimizer.logconfig import make_handler, register_secret, request_id
from testkit.backendprocess import BackendProcess
from testkit.constants import REWARD_CONFIG
from testkit.fakellm import FakeLLM, Reply, keyword_responder

API_KEY = "sk-live-Zq81xKm2Pw7Rt5Vb3Nc9"
USER, PASSWORD = "annotator", "pa55-w0rd-Kx93"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def call(url: str, path: str, body: dict | None, token: str | None, request_id: str) -> int:
    headers = {"Content-Type": "application/json", "X-Request-ID": request_id}
    if token:
        headers["Authorization"] = f"Basic {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_no_secret_in_logs_of_a_real_run(redis_server, namespace):
    def leaky(body: dict) -> Reply:
        # A provider that echoes what it was sent in its error, as some do: the backend must still not log it.
        if "fail" in json.dumps(body):
            return Reply(status=400, error=f"invalid request for api_key={API_KEY} Authorization: Bearer {API_KEY}")
        return keyword_responder(body)

    with FakeLLM(leaky) as fake:
        server = BackendProcess(
            redis_url=redis_server.url,
            llm_base_url=fake.base_url,
            namespace=namespace,
            basic_auth=(USER, PASSWORD),
            workers=1,
            env={
                "LLM_API_KEY": API_KEY,
                "LLM_PROVIDER": "openai",
                "LLM_MAX_RETRIES": "1",
                "LOG_LEVEL": "DEBUG",
                "LOG_FORMAT": "json",
                "DEFAULT_PROMPT": "Label it.",
            },
        )
        tasks = [{"data": {"prompt": "q", "response": r}} for r in ("Good", "please fail", "Bad")]
        body = {"tasks": tasks, "label_config": REWARD_CONFIG, "project": "1.5"}
        try:
            server.start()
            assert call(server.url, "/predict", body, TOKEN, "rid-predict-0001") == 200
            assert call(server.url, "/predict", body, base64.b64encode(b"annotator:wrong").decode(), "rid-401") == 401
            assert call(server.url, "/setup", {"schema": REWARD_CONFIG}, None, "rid-no-auth") == 401
            assert call(server.url, "/metrics", None, TOKEN, "rid-metrics") == 200
            server.stop()
            log = server.web.log_path.read_text()
        finally:
            server.cleanup()
        # The key really was used (so its absence from the log means something).
        assert any(
            {k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {API_KEY}" for h in fake.headers
        )

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    by_id = {}
    for line in lines:
        by_id.setdefault(line.get("request_id"), []).append(line)
    assert any("1 of 3 tasks got no prediction" in line["msg"] for line in by_id["rid-predict-0001"])
    assert any(line.get("status") == 401 for line in by_id["rid-401"])
    assert any(line.get("status") == 401 for line in by_id["rid-no-auth"])
    # The provider's echo of the key did reach the log, masked: the scrubber, not luck, kept it out.
    assert "api_key=***" in log
    for secret in (API_KEY, PASSWORD, TOKEN):
        assert secret not in log


def test_text_format_carries_the_request_id_and_scrubs():
    register_secret("text-secret-4711")
    stream = io.StringIO()
    logger = logging.getLogger("test.textformat")
    logger.handlers[:] = [make_handler("text", stream)]
    logger.propagate = False
    token = request_id.set("rid-text-1")
    try:
        logger.warning("calling with key text-secret-4711 and Authorization: Basic dXNlcjpwYXNz")
    finally:
        request_id.reset(token)
    line = stream.getvalue().strip()
    assert "[rid-text-1]" in line and "test.textformat" in line
    assert "text-secret-4711" not in line and "dXNlcjpwYXNz" not in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_request_id_reaches_log_lines_from_predictor_threads(make_settings, caplog, fake_llm):
    """The LLM client logs from the predictor's pool threads; those lines must still name the request."""
    fake_llm.reject_json_schema = True  # makes the client log its fallback to llama.cpp's schema form
    app = create_app(make_settings(llm_provider="auto"))
    body = {"tasks": [{"data": {"prompt": "q", "response": r}} for r in ("Good", "Bad")], "label_config": REWARD_CONFIG}
    seen = []

    class Grab(logging.Handler):
        def emit(self, record):
            seen.append((record.name, record.getMessage(), getattr(record, "request_id", None)))

    handler = Grab()
    handler.addFilter(make_handler("text").filters[0])
    logging.getLogger().addHandler(handler)
    try:
        response = app.test_client().post("/predict", json=body, headers={"X-Request-ID": "rid-threads-42"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.status_code == 200
    fallback = [r for r in seen if r[0] == "optimizer.serving.llm" and "refused response_format" in r[1]]
    assert fallback and all(r[2] == "rid-threads-42" for r in fallback)
