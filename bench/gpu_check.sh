#!/usr/bin/env bash
# The CUDA checks in one go, for a GPU machine that cannot download anything.
#
#   bash bench/gpu_check.sh prepare   # here, with a package index: puts what the GPU machine lacks
#                                     # into .ort-headers/ and .whl/ (both git-ignored; carry them)
#   bash bench/gpu_check.sh run       # there: python3 with CUDA torch, nvcc, cmake; writes ${OUT:-out/gpu}
#
# `run` builds the library and the CUDA test harness with CUDA forced on, runs the kernel tests
# (the CUDA kernels through the harness on torch's tensors; through onnxruntime's CUDA provider too
# where onnxruntime-gpu is installed) and the benchmark, CPU and GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-run}

if [ "$step" = prepare ]; then
  headers=$(ls -d build/*/ort-headers/include 2>/dev/null | head -1 || true)
  [ -n "$headers" ] || { echo "no onnxruntime headers under build/: run 'pip install -e .' first" >&2; exit 1; }
  rm -rf .ort-headers .whl && cp -r "$headers" .ort-headers
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d .whl "onnx-graphsurgeon==0.6.1"
  grep -qx '/.ort-headers/' .git/info/exclude 2>/dev/null || printf '/.ort-headers/\n/.whl/\n' >>.git/info/exclude
  echo "ready: carry .ort-headers and .whl, then run: bash bench/gpu_check.sh run"
  exit 0
fi

out=${OUT:-out/gpu}
mkdir -p "$out"
python3 -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
cmake -S . -B build/gpu -G Ninja -DSIT_ONNX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DORT_INCLUDE_DIR="$PWD/.ort-headers" >"$out/build.txt" 2>&1
cmake --build build/gpu -j "$(nproc)" >>"$out/build.txt" 2>&1 || { tail -30 "$out/build.txt"; exit 1; }
export SIT_ONNX_OPS_LIBRARY="$PWD/build/gpu/custom_ops/libsit_onnx_ops.so"
export SIT_CUDA_HARNESS="$PWD/build/gpu/custom_ops/libsit_cuda_harness.so"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import onnxruntime as o, torch; print('onnxruntime', o.__version__, o.get_available_providers()); print('torch', torch.__version__)"
} | tee "$out/gpu.txt"
python3 -m pytest -q -rs -p no:cacheprovider tests/runtime 2>&1 | tee "$out/tests.txt" | tail -15
python3 bench/kernels.py --quick --repeat 50 2>&1 | tee "$out/bench.txt"
