"""Shared state in Redis: the policy store and history, project records, webhook coalescing, the job queue.

Every key lives in :mod:`optimizer.state.keys`; nothing else spells a key out.
"""
