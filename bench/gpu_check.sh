#!/usr/bin/env bash
# The CUDA checks in one go, for a GPU machine that cannot download anything.
#
#   bash bench/gpu_check.sh prepare   # here, with a package index: puts what the GPU machine lacks
#                                     # into .ort-headers/ and .whl/, and the libraries built for sm_90
#                                     # here into .gpu-libs/ (all git-ignored; carry them)
#   bash bench/gpu_check.sh run       # there: python3 with CUDA torch, nvcc, cmake; writes ${OUT:-out/gpu}
#
# `run` builds the library and the CUDA test harness with CUDA forced on, runs the kernel tests
# (the CUDA kernels through the harness on torch's tensors; through onnxruntime's CUDA provider too
# where onnxruntime-gpu is installed) and the benchmark, CPU and GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-run}

if [ "$step" = prepare-ort ]; then  # onnxruntime-gpu for the GPU machine, in parts under the carry limit
  mkdir -p .ortgpu && rm -f .ortgpu/*
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 -d .ortgpu "onnxruntime-gpu==1.31.1"
  (cd .ortgpu && split -b 55M -d onnxruntime_gpu-*.whl part. && rm onnxruntime_gpu-*.whl && ls)
  grep -qx "/.ortgpu/" .git/info/exclude 2>/dev/null || echo "/.ortgpu/" >>.git/info/exclude
  echo "carry .ortgpu/part.NN one per call while the GPU machine stays warm, then run"
  exit 0
fi

if [ "$step" = prepare ]; then
  headers=$(ls -d build/*/ort-headers/include 2>/dev/null | head -1 || true)
  [ -n "$headers" ] || { echo "no onnxruntime headers under build/: run 'make setup' first" >&2; exit 1; }
  rm -rf .ort-headers .whl && cp -r "$headers" .ort-headers
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d .whl "onnx-graphsurgeon==0.6.1"
  # nvcc compiles here as well as there: building here saves the GPU machine's time (minutes).
  cmake -S . -B build/gpu-prebuilt -G Ninja -DSIT_ONNX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DORT_INCLUDE_DIR="$PWD/.ort-headers" >/dev/null
  cmake --build build/gpu-prebuilt -j "$(nproc)" >/dev/null
  rm -rf .gpu-libs && mkdir .gpu-libs && cp build/gpu-prebuilt/custom_ops/*.so .gpu-libs/
  for p in /.ort-headers/ /.whl/ /.gpu-libs/; do
    grep -qx "$p" .git/info/exclude 2>/dev/null || echo "$p" >>.git/info/exclude
  done
  echo "ready: carry .ort-headers, .whl and .gpu-libs, then run: bash bench/gpu_check.sh run"
  exit 0
fi

out=${OUT:-out/gpu}
mkdir -p "$out"
python3 -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
libs=.gpu-libs
if [ ! -f "$libs/libsit_cuda_harness.so" ]; then  # not built by `prepare`: build here
  cmake -S . -B build/gpu -G Ninja -DSIT_ONNX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DORT_INCLUDE_DIR="$PWD/.ort-headers" >"$out/build.txt" 2>&1
  cmake --build build/gpu -j "$(nproc)" >>"$out/build.txt" 2>&1 || { tail -30 "$out/build.txt"; exit 1; }
  libs=build/gpu/custom_ops
fi
export SIT_ONNX_OPS_LIBRARY="$PWD/$libs/libsit_onnx_ops.so"
export SIT_CUDA_HARNESS="$PWD/$libs/libsit_cuda_harness.so"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import onnxruntime as o, torch; print('onnxruntime', o.__version__, o.get_available_providers()); print('torch', torch.__version__)"
} | tee "$out/gpu.txt"
# onnxruntime-gpu, when its parts were carried here: joined and installed beside the others, so
# the custom ops run for real behind the CUDA execution provider (registration, stream, placement).
if ls .ortgpu/part.* >/dev/null 2>&1; then
  cat .ortgpu/part.* >/tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
  python3 -m pip install --quiet --no-index --no-deps --target /tmp/ortgpu \
    /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
  export PYTHONPATH="/tmp/ortgpu:$PYTHONPATH"
  python3 -c "import onnxruntime as o; o.preload_dlls(); print('onnxruntime-gpu', o.__version__, o.get_available_providers())" \
    | tee -a "$out/gpu.txt"
fi
# Every GPU test runs (no stop at the first failure) and the benchmark runs whatever they said;
# the script fails at the end if any test failed, or if no GPU test ran at all.
set +e
python3 -m pytest -q -rs -p no:cacheprovider -m gpu tests/runtime >"$out/tests.txt" 2>&1
tests_rc=$?
set -e
tail -25 "$out/tests.txt"
python3 bench/kernels.py --gpu-only --repeat 50 2>&1 | tee "$out/bench.txt"
if python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
  python3 bench/models.py --provider cuda --repeat 20 2>&1 | tee "$out/models.txt"
fi
passed=$(grep -Eo '[0-9]+ passed' "$out/tests.txt" | grep -Eo '[0-9]+' || echo 0)
if [ "$tests_rc" -ne 0 ] || [ "$passed" -eq 0 ]; then
  echo "gpu_check: FAILED (pytest exit $tests_rc, $passed GPU tests passed)"
  exit 1
fi
echo "gpu_check: PASSED ($passed GPU tests)"
