"""Test-only helpers: skip-or-fail gating, fuzzing strategies, the headless browser, telling gunicorn workers apart.

The fakes and process fixtures that benchmarks use too (scripted LLM, fake Label Studio, Redis and backend
processes) live in ``testkit/``. Kept apart from ``tests/test_*.py`` so a reader sees at once which files are tests.
"""
