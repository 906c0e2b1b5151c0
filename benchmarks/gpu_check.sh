#!/usr/bin/env bash
# GPU parity and throughput check (benchmarks/gpu_check.py): run from the repository root on a
# machine with an NVIDIA GPU and torch, onnx, onnxruntime-gpu, h5py, click installed.
#   benchmarks/gpu_check.sh [--patches 4096] [--parity-patches 256] [--cpu-dry-run]
# Stops after 8 minutes (exit 124). PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
exec timeout 480 "$PYTHON" -m benchmarks.gpu_check "$@"
