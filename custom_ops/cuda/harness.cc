// A C entry to the CUDA launchers for GPU tests and benchmarks that run without
// onnxruntime-gpu (tests/runtime/test_cuda_kernels.py drives it through ctypes on torch's
// device tensors). Not part of the custom-op library: a separate, test-only shared library.
#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "spiking_launch.h"

namespace {

thread_local std::string last_error;

int Fail(const std::string& message) {
  last_error = message;
  return 1;
}

int Done(cudaError_t error) { return error == cudaSuccess ? 0 : Fail(cudaGetErrorString(error)); }

// The same checks the custom ops make at session creation.
int ReadParams(const float* thresholds, const float* resets, const float* weights, int steps, sit::ExpParams* out) {
  const size_t k = steps > 0 ? static_cast<size_t>(steps) : 0;
  const std::string error = sit::CheckExpParams(std::vector<float>(thresholds, thresholds + k),
                                                std::vector<float>(resets, resets + k),
                                                std::vector<float>(weights, weights + k), out);
  return error.empty() ? 0 : Fail(error);
}

// Runs `launch` `repeats` times on the stream; with `elapsed_ms`, times them with CUDA events
// (no host overhead between launches: a 15 MB tensor takes microseconds on current GPUs).
template <typename Launch>
int Repeat(cudaStream_t stream, int repeats, float* elapsed_ms, Launch&& launch) {
  cudaEvent_t start = nullptr, stop = nullptr;
  if (elapsed_ms && (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess)) {
    return Done(cudaGetLastError());
  }
  cudaError_t error = elapsed_ms ? cudaEventRecord(start, stream) : cudaSuccess;
  for (int r = 0; r < (repeats > 0 ? repeats : 1) && error == cudaSuccess; ++r) error = launch();
  if (elapsed_ms && error == cudaSuccess) {
    error = cudaEventRecord(stop, stream);
    if (error == cudaSuccess) error = cudaEventSynchronize(stop);
    if (error == cudaSuccess) error = cudaEventElapsedTime(elapsed_ms, start, stop);
    if (error == cudaSuccess) *elapsed_ms /= static_cast<float>(repeats > 0 ? repeats : 1);
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  return Done(error);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char* sit_harness_error() { return last_error.c_str(); }

// Each entry runs its kernel `repeats` times (at least once) on `stream`; with a non-null
// `elapsed_ms` it waits and stores the mean milliseconds per run. Returns 0, or 1 and an error.
__attribute__((visibility("default"))) int sit_harness_exp(void* stream, const void* x, void* y, int64_t n,
                                                           const float* thresholds, const float* resets,
                                                           const float* weights, int steps, int half, int repeats,
                                                           float* elapsed_ms) {
  sit::ExpParams params;
  if (ReadParams(thresholds, resets, weights, steps, &params)) return 1;
  const auto s = static_cast<cudaStream_t>(stream);
  return Repeat(s, repeats, elapsed_ms, [&] { return sit::LaunchSpikingExp(s, x, y, n, params, half != 0); });
}

// SpikingActivation: `act` holds low, high, bias, the 4 tails, then gate (0 or 1).
__attribute__((visibility("default"))) int sit_harness_activation(void* stream, const void* x, void* y, int64_t n,
                                                                  const float* thresholds, const float* resets,
                                                                  const float* weights, int steps, const float* act,
                                                                  int half, int repeats, float* elapsed_ms) {
  sit::ExpParams params;
  if (ReadParams(thresholds, resets, weights, steps, &params)) return 1;
  sit::ActivationAttrs attrs;
  const std::string error =
      sit::CheckActivationAttrs(act[0], act[1], act[2], std::vector<float>(act + 3, act + 7),
                                static_cast<int64_t>(act[7]), &attrs);
  if (!error.empty()) {
    last_error = error;
    return 1;
  }
  const auto s = static_cast<cudaStream_t>(stream);
  return Repeat(s, repeats, elapsed_ms,
                [&] { return sit::LaunchSpikingActivation(s, x, y, n, params, attrs, half != 0); });
}

__attribute__((visibility("default"))) int sit_harness_norm(void* stream, const void* w, void* y, int64_t outer,
                                                            int64_t n, int64_t inner, int64_t time_steps, int half,
                                                            int repeats, float* elapsed_ms) {
  const sit::AxisSplit split{outer, n, inner};
  const auto s = static_cast<cudaStream_t>(stream);
  return Repeat(s, repeats, elapsed_ms, [&] { return sit::LaunchSpikingNorm(s, w, y, split, time_steps, half != 0); });
}

__attribute__((visibility("default"))) int sit_harness_softmax(void* stream, const void* x, void* y, int64_t outer,
                                                               int64_t n, int64_t inner, const float* thresholds,
                                                               const float* resets, const float* weights, int steps,
                                                               int64_t time_steps, int shift, int sigmoid, int half,
                                                               int repeats, float* elapsed_ms) {
  sit::ExpParams params;
  if (ReadParams(thresholds, resets, weights, steps, &params)) return 1;
  const sit::AxisSplit split{outer, n, inner};
  const auto s = static_cast<cudaStream_t>(stream);
  return Repeat(s, repeats, elapsed_ms, [&] {
    return sit::LaunchSpikingSoftmax(s, x, y, split, params, time_steps, shift != 0, sigmoid != 0, half != 0);
  });
}

// The bandwidth baseline: a plain device-to-device copy of `bytes`, timed the same way.
__attribute__((visibility("default"))) int sit_harness_copy(void* stream, const void* x, void* y, int64_t bytes,
                                                            int repeats, float* elapsed_ms) {
  const auto s = static_cast<cudaStream_t>(stream);
  return Repeat(s, repeats, elapsed_ms,
                [&] { return cudaMemcpyAsync(y, x, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, s); });
}

}  // extern "C"
