# The two commands: `make run` (set up and run the whole stack) and `make test` (set up and run every test).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup llm labelstudio run test fuzz soak lint image-test bench bench-optimize clean

setup: $(VENV)/.done
$(VENV)/.done: requirements.txt requirements-dev.txt bench/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

llm:
	scripts/install_llm.sh

labelstudio:
	scripts/install_labelstudio.sh

run: setup llm
	scripts/run_stack.sh

test: setup llm labelstudio
	$(VENV)/bin/ruff check .
	TEST_REQUIRE_ALL=1 $(PY) -m pytest -q

# The HTTP fuzz suite alone, ten times longer than in `make test` (FUZZ_EXAMPLES=N to choose).
fuzz: setup
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(PY) -m pytest -q -s tests/test_fuzz_http.py

# The real images (app and llm), built from the Dockerfile with buildah on a Debian base made by mmdebstrap, then
# the app image started and used (scripts/image_test.sh; needs root, buildah, mmdebstrap and redis-server).
image-test: setup
	scripts/image_test.sh

# 20 minutes of mixed traffic with faults against make run's stack and a real Label Studio (not part of make test;
# bench/soak.py, docs/trust.md). Writes bench/results/soak.json; exits 1 when a goal is missed.
soak: setup labelstudio
	$(PY) -m bench.soak

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup llm
	$(PY) -m bench

# The optimiser bench's baselines need packages the service does not (gepa): they live in bench/requirements.txt.
bench-optimize: setup llm
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) -m bench.optimize

clean:
	rm -rf $(VENV) .venv-llm .venv-ls var .pytest_cache
