"""Shared state in Redis: the policy store and history, project records, webhook coalescing, bulk-run claims and
the stack-wide LLM slots. (The job queue over RQ is ``optimizer.jobs.queue``, beside the functions it queues.)

Every key lives in :mod:`optimizer.state.keys`; nothing else spells a key out.
"""
