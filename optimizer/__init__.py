"""A prompt-optimising ML backend for Label Studio: the engine.

The layers, lowest first (each imports only the ones before it; ``tests/test_layers.py`` enforces it):

- :mod:`optimizer.labelstudio`: label configs, task data as text, the result format, the REST client;
- :mod:`optimizer.serving`: the prompt policy, prompting, the LLM client, parsing, the predictor;
- :mod:`optimizer.learning`: gold, splits, verifiers, the gated search (no Redis, no RQ);
- :mod:`optimizer.settings`, :mod:`optimizer.logconfig`: configuration and logs;
- :mod:`optimizer.state`: everything kept in Redis, with its one key map;
- :mod:`optimizer.runtime`: the services a process builds, the annotator behind ``/predict``, telemetry, start-up;
- :mod:`optimizer.jobs`: the job queue and its typed kinds, webhooks, the training run, bulk pre-annotation, the
  worker;
- :mod:`optimizer.cli`: ``python -m optimizer``.

The names below are the public face. They load on first use, so ``import optimizer.learning`` pulls in neither Redis
nor the web stack.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "Schema": "optimizer.labelstudio.labelconfig",
    "parse_label_config": "optimizer.labelstudio.labelconfig",
    "Policy": "optimizer.serving.policy",
    "Demo": "optimizer.serving.policy",
    "Mode": "optimizer.serving.modes",
    "RankerKind": "optimizer.serving.modes",
    "LLMClient": "optimizer.serving.llm",
    "LLMConfig": "optimizer.serving.llm",
    "Predictor": "optimizer.serving.predictor",
    "Prediction": "optimizer.serving.predictor",
    "GoldItem": "optimizer.learning.gold",
    "load_gold": "optimizer.learning.gold",
    "LoopConfig": "optimizer.learning.loop_config",
    "optimize": "optimizer.learning.procedure",
    "Settings": "optimizer.settings",
    "load_settings": "optimizer.settings",
    "Services": "optimizer.runtime.services",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'optimizer' has no attribute {name!r}")
