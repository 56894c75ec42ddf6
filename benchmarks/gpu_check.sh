#!/bin/bash
# One CUDA GPU, < 8 minutes: convnet4 fp32 / bf16-mixed / channels-last training throughput,
# VGG16 feature extraction GPU vs CPU, `nnlab train` (ddp, devices 1) and `nnlab evaluate` on
# the GPU in a temporary project. Run from anywhere in a checkout with its venv:
#   benchmarks/gpu_check.sh          (exit 2 without a CUDA GPU)
#   benchmarks/gpu_check.sh --cpu    (toy sizes on the CPU: checks the script itself)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$ROOT/.venv/bin/activate" ]; then
    source "$ROOT/.venv/bin/activate"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 python "$ROOT/benchmarks/gpu_check.py" "$@"
