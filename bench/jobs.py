"""The RQ job P6 runs in a worker: ``n`` predictions through the same Services and Predictor the web uses."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.runtime.services import Services
from optimizer.settings import load_settings

from .workload import CONFIG, texts


@cache
def _services() -> Services:
    return Services(load_settings())


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def predict_texts(n: int, offset: int) -> dict:
    """Predict ``n`` distinct inputs; report this process's memory after doing so."""
    services = _services()
    schema = parse_label_config(CONFIG)
    policy = services.store.current("bench.worker")
    predictions = services.predictor.predict_many(policy, schema, list(texts(n, offset)))
    failed = sum(1 for p in predictions if p.error)
    return {"pid": os.getpid(), "rss_mb": _status_mb("VmRSS"), "peak_mb": _status_mb("VmHWM"), "failed": failed}
