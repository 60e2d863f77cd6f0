#!/usr/bin/env bash
# The GPU check of issue 11, one script for one CUDA machine (about 8 minutes on a modern GPU):
#   1. the tests that exercise CUDA (pytest -m cuda: CPU vs CUDA runs, CPU offload on CUDA, half-precision
#      N:M patterns; plus every test that skips itself without CUDA);
#   2. `perp run` on cuda for magnitude / Wanda / SparseGPT with the none, perp and perp-masklora presets;
#   3. the prune and retrain benches with --device cuda;
#   4. the scale bench on a random LLaMA of SmolLM2-1.7B's shape in bfloat16.
# Every result lands in bench/results/*-cuda.* (the runs' summaries in bench/results/gpu_check-cuda.jsonl,
# the whole log in bench/results/gpu_check-cuda.log). Needs the project's environment with a CUDA build of
# torch (PYTHON, default .venv/bin/python) and the embedded model in PERP_HOME (setup puts it there).
#
#   bash bench/gpu_check.sh            # OUT=<folder> also copies the results there
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RESULTS=bench/results
LOG=$RESULTS/gpu_check-cuda.log
RUNS=$RESULTS/gpu_check-cuda.jsonl
mkdir -p "$RESULTS"
: >"$LOG"
: >"$RUNS"
export PYTHONUNBUFFERED=1
status=0
step() { echo "== $*" | tee -a "$LOG"; "$@" 2>&1 | tee -a "$LOG"; local rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || status=$rc; }

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: torch ' + torch.__version__)" || exit 2
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)" | tee -a "$LOG"

step "$PY" -m pytest -q -p no:cacheprovider -m "cuda" tests/
step "$PY" -m pytest -q -p no:cacheprovider tests/evaluation/test_perplexity.py tests/resources/test_memory_meter.py tests/model/test_models.py tests/repair/test_half_precision.py tests/offload/test_offload.py

for method in magnitude wanda sparsegpt; do
  for preset in none perp perp-masklora; do
    step "$PY" -m perp_engine.cli run --no-store --quiet --device cuda --method "$method" --preset "$preset" \
      --sparsity 0.5 --steps 20 --json "/tmp/gpu-check-$method-$preset.json"
    [ -f "/tmp/gpu-check-$method-$preset.json" ] && "$PY" -c "import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))" \
      "/tmp/gpu-check-$method-$preset.json" >>"$RUNS"
  done
done

step "$PY" bench/prune_bench.py --device cuda
step "$PY" bench/retrain_bench.py --device cuda
step "$PY" bench/scale_bench.py --device cuda --only "smollm2-1.7b bfloat16" --max-gib 80

if [ -n "${OUT:-}" ]; then cp "$RESULTS"/*-cuda.* "$OUT"/ 2>/dev/null; fi
echo "gpu_check finished with status $status; results in $RESULTS/*-cuda.*" | tee -a "$LOG"
exit $status
