"""Turning (policy, task) into labels: the prompt policy, prompting, retrieval, the LLM client, parsing, the predictor.

One predictor serves `/predict`, bulk pre-annotation and the optimiser, so the loop scores exactly what users get.
Imports only :mod:`optimizer.labelstudio`; no Redis, no RQ.
"""
