#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with an NVIDIA GPU: build with CUDA forced on,
# run the GPU-marked kernel tests (they skip nowhere here) and the GPU benchmark.
#   bash bench/gpu_check.sh            # writes results under ${OUT:-out/gpu}
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu}
mkdir -p "$out"
python3 -m venv .venv-gpu
py=.venv-gpu/bin/python
$py -m pip install --quiet --upgrade pip
$py -m pip install --quiet "torch==2.13.0" onnxruntime-gpu
CMAKE_ARGS="-DSIT_ONNX_CUDA=ON" $py -m pip install --quiet -e ".[dev]"
$py -m pip uninstall --quiet -y onnxruntime || true   # the CPU wheel would shadow onnxruntime-gpu
$py -m pip install --quiet --force-reinstall --no-deps onnxruntime-gpu
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" | tee -a "$out/gpu.txt"
$py -m pytest -q -m gpu tests/runtime 2>&1 | tee "$out/gpu-tests.txt"
$py bench/kernels.py --quick 2>&1 | tee "$out/gpu-bench.txt"
