#!/usr/bin/env bash
# GPU check on one H200 (about 8 minutes): SFT through r1ov's own stage on Qwen2.5-VL-3B's
# architecture with random weights built from its config (nothing downloaded), bf16, max_length
# 4096; writes tokens/s and an MFU estimate to docs/benchmarks/gpu.json (and gpu.md).
#
#   scripts/gpu-check.sh                 # STEPS=20 MAX_LENGTH=4096 PEAK_TFLOPS=989 by default
#
# The same Python runs on the CPU on the tiny model in the test suite (tests/test_train_gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-20}"
MAX_LENGTH="${MAX_LENGTH:-4096}"
PEAK_TFLOPS="${PEAK_TFLOPS:-989}"  # H100/H200 SXM dense bf16
LIMIT_S="${LIMIT_S:-480}"

export PYTHONPATH="${PWD}/src${PYTHONPATH:+:${PYTHONPATH}}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MLFLOW_DISABLE_TELEMETRY=true
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-${PWD}/.torch_extensions}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"${PYTHON}" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device visible to torch"'
timeout "${LIMIT_S}" "${PYTHON}" -m r1ov.bench.gpu --arch qwen2.5-vl-3b --device cuda \
    --steps "${STEPS}" --max-length "${MAX_LENGTH}" --peak-tflops "${PEAK_TFLOPS}" --out docs/benchmarks
cat docs/benchmarks/gpu.md
