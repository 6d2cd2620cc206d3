"""P1 (batch concurrency against a 200 ms LLM) and P2 (per-task overhead with a 0 ms LLM; /health p99)."""

from __future__ import annotations

import asyncio
import math
import time

from optimizer.settings import Settings

from .harness import (
    Client,
    DirectLLM,
    backend,
    backend_env,
    cpu_seconds,
    fake_llm,
    llm_bodies,
    median,
    percentile,
    timed,
)
from .workload import CONFIG, predict_body, texts

DEFAULT_CONCURRENCY = Settings.model_fields["llm_concurrency"].default


def _predict(server, body: dict) -> None:
    client = Client(server.url)
    status, payload = client.request("POST", "/predict", body)
    client.close()
    if status != 200:
        raise RuntimeError(f"/predict answered {status}: {payload[:200]!r}")


def p1(redis_url: str, tasks: int = 32, delay: float = 0.2, repeat: int = 5) -> dict:
    concurrency = DEFAULT_CONCURRENCY
    with fake_llm(delay) as llm_url:
        walls = {}
        for label, c, reps in (("concurrent", concurrency, repeat), ("sequential", 1, 3)):
            env = backend_env(redis_url, llm_url, LLM_CONCURRENCY=c, REDIS_NAMESPACE=f"p1{c}")
            with backend(env) as server:
                _predict(server, predict_body(2, offset=10_000))  # warm-up: client, config parse, policy
                walls[label] = timed(lambda s=server: _predict(s, predict_body(tasks)), reps)
    ideal = math.ceil(tasks / concurrency) * delay
    concurrent, sequential = median(walls["concurrent"]), median(walls["sequential"])
    return {
        "tasks": tasks,
        "llm_delay_s": delay,
        "concurrency": concurrency,
        "wall_s": concurrent,
        "sequential_wall_s": sequential,
        "ideal_s": ideal,
        "speedup": sequential / concurrent,
        "ratio_to_ideal": concurrent / ideal,
        "runs_s": walls,
    }


def _health_load(url: str, clients: int, per_client: int, interval: float | None) -> tuple[list[float], float]:
    """``clients`` concurrent clients, each on its own keep-alive connection, ``per_client`` GETs /health each.

    ``interval=None``: closed loop, each client sends its next request as soon as the last one answers (a stress
    test: latency is then mostly queueing, clients / throughput). ``interval=s``: each client sends on a fixed
    schedule, one request every ``s`` seconds (staggered), and latency counts from the scheduled time, so a slow
    answer that delays the next send is charged too (no coordinated omission).

    The clients are coroutines on one event loop in this process: threads would wait on this process's GIL and
    charge that wait to the server.
    """
    return asyncio.run(_health_clients(url, clients, per_client, interval))


async def _health_clients(url: str, clients: int, per_client: int, interval: float | None):
    host, port = url.removeprefix("http://").split(":")
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    async def get(reader, writer) -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"/health answered {head[:40]!r}")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        await reader.readexactly(length)

    async def client(i: int, start: float) -> list[float]:
        reader, writer = await asyncio.open_connection(host, int(port))
        await get(reader, writer)  # open the keep-alive connection before the clock starts
        out = []
        loop = asyncio.get_running_loop()
        due = start + (interval or 0) * i / clients
        for _ in range(per_client):
            if interval is not None:
                await asyncio.sleep(max(0.0, due - loop.time()))
                t0, due = due, due + interval
            else:
                t0 = loop.time()
            await get(reader, writer)
            out.append(loop.time() - t0)
        writer.close()
        return out

    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client(i, start) for i in range(clients)))
    elapsed = time.perf_counter() - t0 - 0.5
    flat = [x for r in results for x in r]
    return flat, len(flat) / elapsed


def p2(
    redis_url: str,
    tasks: int = 64,
    repeat: int = 11,
    clients: int = 50,
    per_client: int = 30,
    interval: float = 0.1,
    rounds: int = 3,
) -> dict:
    """Backend runs and direct runs alternate, so a burst of load from elsewhere on the machine hits both alike;
    /health is measured in ``rounds`` separate rounds and the median round is reported (the worst one too)."""
    with fake_llm(0.0) as llm_url:
        env = backend_env(redis_url, llm_url, LLM_CONCURRENCY=DEFAULT_CONCURRENCY, REDIS_NAMESPACE="p2")
        bodies = llm_bodies(llm_url, "fake", "json_schema", "Label the input.", texts(tasks), CONFIG)
        walls, direct, cpu = [], [], 0.0
        with backend(env) as server, DirectLLM(llm_url, DEFAULT_CONCURRENCY) as straight:
            (worker,) = server.workers()
            for _ in range(3):  # warm-up: client, connections, config parse, policy
                _predict(server, predict_body(tasks, offset=50_000))
                straight.send_all(bodies)
            for _ in range(repeat):
                cpu0 = cpu_seconds(worker)
                walls += timed(lambda: _predict(server, predict_body(tasks)), 1)
                cpu += cpu_seconds(worker) - cpu0
                direct += timed(lambda: straight.send_all(bodies), 1)
        with backend(env, workers=2) as server:  # the shipped .env default: 2 workers x 8 threads
            paced = [_health_load(server.url, clients, per_client, interval) for _ in range(rounds)]
            stressed, stressed_rps = _health_load(server.url, clients, per_client, None)
    wall, direct_wall = median(walls), median(direct)
    p99s = sorted(percentile(latencies, 99) * 1000 for latencies, _ in paced)
    return {
        "tasks": tasks,
        "wall_s": wall,
        "direct_llm_wall_s": direct_wall,
        "overhead_ms_per_task": (wall - direct_wall) / tasks * 1000,
        "backend_cpu_ms_per_task": cpu / (repeat * tasks) * 1000,
        "health_clients": clients,
        "health_interval_s": interval,
        "health_requests_per_round": clients * per_client,
        "health_p99_ms_rounds": p99s,
        "health_p99_ms": median(p99s),
        "health_p50_ms": median([percentile(latencies, 50) * 1000 for latencies, _ in paced]),
        "health_rps": median([rps for _, rps in paced]),
        "health_closed_loop_p50_ms": percentile(stressed, 50) * 1000,
        "health_closed_loop_p99_ms": percentile(stressed, 99) * 1000,
        "health_closed_loop_rps": stressed_rps,
    }
