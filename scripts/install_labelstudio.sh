#!/usr/bin/env bash
# Install Label Studio 1.23.2 into its own venv (.venv-ls, ~1 GB) for the end-to-end tests. It is never imported by
# the backend: tests start it as a separate process, exactly as users run it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LS_VENV:-.venv-ls}
PY=${PYTHON:-python3}
if [ -f "$VENV/.done" ]; then exit 0; fi
$PY -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "label-studio==1.23.2" "label-studio-sdk==2.1.2"
touch "$VENV/.done"
