"""Real processes for the benchmarks: redis-server, the fake LLM, the llama.cpp server and gunicorn.

Every server binds to loopback on a free port and is stopped by the context manager that started it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testkit.backendprocess import ROOT, BackendProcess
from testkit.embedded import EmbeddedLLM, find_server_python
from testkit.redisserver import RedisServer


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@contextlib.contextmanager
def fake_llm(delay: float) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fakellm_proc", "--delay", str(delay)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def llama_server() -> Iterator[str]:
    """Our own llama.cpp server with SmolLM2 on a free port (never the one `make run` may have on 8081)."""
    python = find_server_python()
    if python is None:
        raise RuntimeError("the embedded LLM is not built (make llm, or LLM_VENV=<venv>)")
    server = EmbeddedLLM(python).start()
    try:
        yield server.base_url
    finally:
        server.stop()


def backend_env(redis_url: str, llm_url: str, **extra) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "LLM_BASE_URL": llm_url,
        "LLM_MODEL": "fake",
        "LLM_PROVIDER": "openai",
        "LLM_MAX_RETRIES": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "DEFAULT_PROMPT": "Label the input.",
        "PREDICT_DEADLINE": "120",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Backend:
    """gunicorn with the project's gunicorn.conf.py (testkit/backendprocess.py), and its worker processes' ids."""

    def __init__(self, process: BackendProcess) -> None:
        self.process = process
        self.url = process.url

    def workers(self) -> list[int]:
        return children(self.process.web.pid)


@contextlib.contextmanager
def backend(env: dict[str, str], workers: int = 1, threads: int = 8) -> Iterator[Backend]:
    process = BackendProcess(
        redis_url=env["REDIS_URL"],
        llm_base_url=env["LLM_BASE_URL"],
        namespace=env.get("REDIS_NAMESPACE", "bench"),
        workers=workers,
        threads=threads,
        env=env,
        config=ROOT / "gunicorn.conf.py",  # as deployed: no test request log in the request path
    )
    try:
        process.start()
        yield Backend(process)
    finally:
        process.cleanup()


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB, as ``ps`` reports it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Client:
    """One keep-alive HTTP connection, as Label Studio's requests session uses."""

    def __init__(self, url: str, timeout: float = 300) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def llm_bodies(base: str, model: str, form: str, instruction: str, inputs: list[str], schema_config: str) -> list[dict]:
    """The exact chat-completion bodies the backend sends for ``inputs``, built by the backend's own code: the same
    messages, schema form, answer-token cap and logprobs as ``Predictor.predict``'s call.

    ``form`` becomes a :class:`ResponseFormat` first: ``_request`` compares members by identity, and a plain string
    left every body without its ``response_format`` (llama.cpp then answered unconstrained, 9x the tokens, and P5
    compared different work)."""
    from optimizer.labelstudio.labelconfig import parse_label_config
    from optimizer.serving.llm import LLMClient, LLMConfig, ResponseFormat
    from optimizer.serving.policy import Policy
    from optimizer.serving.prompting import answer_token_cap, build_messages, json_schema

    schema, fmt = parse_label_config(schema_config), ResponseFormat(form)
    shaper = LLMClient(LLMConfig(base_url=base, model=model, response_format=fmt))
    cap = answer_token_cap(schema, shaper.config.max_tokens)
    bodies = [
        shaper._request(build_messages(Policy(instruction), schema, text), json_schema(schema), cap, fmt, True)
        for text in inputs
    ]
    if fmt is not ResponseFormat.TEXT and not all("response_format" in body for body in bodies):
        raise RuntimeError(f"llm_bodies built bodies without the {fmt} response_format the backend sends")
    return bodies


class DirectLLM:
    """Sends chat-completion bodies straight to an LLM server, ``concurrency`` at a time, one keep-alive connection
    per thread: the server's own time for a batch, with no backend in between."""

    def __init__(self, base: str, concurrency: int) -> None:
        self.base = base.removesuffix("/v1")
        self.pool = ThreadPoolExecutor(concurrency)
        self.local = threading.local()

    def _send(self, body: dict) -> dict:
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.base)
        status, payload = self.local.client.request("POST", "/v1/chat/completions", body)
        if status != 200:
            raise RuntimeError(f"LLM server answered {status}: {payload[:200]!r}")
        return json.loads(payload)

    def send_all(self, bodies: list[dict]) -> list[dict]:
        return list(self.pool.map(self._send, bodies))

    def close(self) -> None:
        self.pool.shutdown()

    def __enter__(self) -> DirectLLM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
