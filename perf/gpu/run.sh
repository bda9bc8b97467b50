#!/usr/bin/env bash
# The GPU benchmark in one go, on a bare GPU machine (DEVELOPERS.md, "The GPU machine"): it installs
# nothing, needs only python3 with CUDA torch, numpy, tqdm and matplotlib (the machine's own), checks
# the GPU, and runs `padrec bench-gpu` on Beauty within 8 minutes of wall-clock. It writes
# results/gpu/<gpu-name>.json, .md and .png, after every finished cell, and copies them to $OUT when
# that is set (the device tool's folder of files that come back).
#
#   perf/gpu/run.sh            the GPU run (make perf-gpu)
#   perf/gpu/run.sh --smoke    the same path on the CPU, small: what CI runs (tests/perf/test_gpu_script.py)
#
# BENCH_ARGS adds options of `padrec bench-gpu` (later ones win), e.g. BENCH_ARGS="--users 100".
set -euo pipefail
cd "$(dirname "$0")/../.."
# the checkout's .venv where there is one (here); the machine's python3 on the GPU machine (.venv does not travel)
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT_DIR=${OUT_DIR:-results/gpu}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--smoke" ]]; then
    # a few users, batch 1 and 4, k=2, fp32 and bf16, with and without static-shape calls: every code
    # path of the GPU run, on the CPU (where static calls run eagerly: no CUDA graphs to capture)
    args=(--device cpu --users 6 --k 2 --trees 2x2 --draft-rounds 2 --cells 1:fp32,1:bf16:graphs,4:fp32:graphs,4:bf16
          --beams 10:10 --beam-users 3 --threads 1 --max-minutes 5)
    limit=600
else
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PYTHON" - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"error: torch {torch.__version__} sees no CUDA device; this script is for a GPU machine "
             "(perf/gpu/run.sh --smoke runs its CPU path)")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PY
    # cells start until minute 4, the most wanted first (batch 1 in bf16 with CUDA graphs is the
    # headline), then beam search until about minute 5.5; the last part ends inside the 8 minutes, and
    # cells left out are reported
    args=(--device cuda --users 200 --k 1,2,3,4,5,6 --trees 4x3 --draft-rounds 2,3,4 --forced-room 3 --threads 4
          --max-minutes 5.5
          --cells 1:bf16:graphs,1:bf16,16:bf16:graphs,1:fp32:graphs,16:bf16,4:bf16:graphs,1:fp32,16:fp32:graphs
          --beams 10:10,20:20 --beam-users 100 --beam-minutes 1.5)
    limit=480
fi
mkdir -p "$OUT_DIR"
status=0
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
timeout "$limit" "$PYTHON" -m padrec.cli bench-gpu --dataset beauty --drafters eagle,padrec --out-dir "$OUT_DIR" \
    --quiet "${args[@]}" ${BENCH_ARGS:-} || status=$?
if [[ -n "${OUT:-}" ]]; then
    cp "$OUT_DIR"/*.json "$OUT_DIR"/*.md "$OUT_DIR"/*.png "$OUT" 2> /dev/null || true
fi
exit "$status"
