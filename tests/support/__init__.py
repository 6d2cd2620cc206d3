"""Test support: the scripted LLM, the fake Label Studio, process and Redis helpers, real-server launchers, constants.

Kept apart from ``tests/test_*.py`` so a reader sees at once which files are tests and which are the parts they run.
"""
