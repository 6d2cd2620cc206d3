"""P5: tasks per second through the backend with the embedded model, against the raw llama.cpp server's own rate.

The raw figure sends the very requests the backend sends (same messages, schema form, logprobs and max_tokens,
built by the backend's own code) straight to the server, with as many in flight as the backend keeps
(LLM_CONCURRENCY): the server computes one at a time, but a second request in flight hides the HTTP and JSON time
of the first, so this is the server's best rate, not a straw man. The two are interleaved (raw, backend, raw,
backend) so a change in machine load hits both alike, and the completion tokens of both are reported to show the
same work was done.
"""

from __future__ import annotations

import time
import urllib.request

from .harness import Client, DirectLLM, backend, backend_env, llama_server, llm_bodies, median
from .workload import CONFIG, predict_body, texts

INSTRUCTION = "Label the input."
MODEL = "smollm2-135m"


def _raw_run(base: str, bodies: list[dict], concurrency: int) -> tuple[float, int]:
    with DirectLLM(base, concurrency) as direct:
        started = time.perf_counter()
        replies = direct.send_all(bodies)
        return time.perf_counter() - started, sum(r["usage"]["completion_tokens"] for r in replies)


def _completion_tokens(server) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("lsml_llm_tokens_total{") and 'kind="completion"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _backend_run(server, n: int) -> tuple[float, int]:
    before = _completion_tokens(server)
    client = Client(server.url)
    started = time.perf_counter()
    status, payload = client.request("POST", "/predict", predict_body(n))
    elapsed = time.perf_counter() - started
    client.close()
    if status != 200:
        raise RuntimeError(f"/predict answered {status}: {payload[:200]!r}")
    return elapsed, int(_completion_tokens(server) - before)


def p5(redis_url: str, tasks: int = 12, repeat: int = 2, concurrency: int = 2) -> dict:
    with llama_server() as base:
        bodies = llm_bodies(base, MODEL, "llama_schema", INSTRUCTION, texts(tasks), CONFIG)
        _raw_run(base, bodies[:1], 1)  # warm-up: load the model pages, fill caches
        env = backend_env(redis_url, base, LLM_MODEL=MODEL, LLM_PROVIDER="llamacpp", DEFAULT_PROMPT=INSTRUCTION,
                          LLM_CONCURRENCY=concurrency, LLM_TIMEOUT=120, REDIS_NAMESPACE="p5")  # fmt: skip
        raw, through, raw_tokens, backend_tokens = [], [], 0, 0
        one_at_a_time, _ = _raw_run(base, bodies, 1)  # for the LLM_CONCURRENCY choice: does a 2nd in flight help?
        with backend(env) as server:
            _backend_run(server, 1)  # warm-up
            for _ in range(repeat):
                elapsed, raw_tokens = _raw_run(base, bodies, concurrency)
                raw.append(elapsed)
                elapsed, backend_tokens = _backend_run(server, tasks)
                through.append(elapsed)
    raw_rate, backend_rate = tasks / median(raw), tasks / median(through)
    return {
        "tasks": tasks,
        "concurrency": concurrency,
        "raw_tasks_per_s": raw_rate,
        "raw_sequential_tasks_per_s": tasks / one_at_a_time,
        "backend_tasks_per_s": backend_rate,
        "ratio": backend_rate / raw_rate,
        "raw_completion_tokens": raw_tokens,
        "backend_completion_tokens": backend_tokens,
        "raw_runs_s": raw,
        "backend_runs_s": through,
    }
