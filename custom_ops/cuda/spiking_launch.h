// Launchers for the CUDA kernels; each returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../include/spiking_attrs.h"

namespace sit {

// half = true: x and y hold IEEE float16 bits, computed in float32.
cudaError_t LaunchSpikingExp(cudaStream_t stream, const void* x, void* y, int64_t n, const ExpParams& params,
                             bool half);
cudaError_t LaunchSpikingActivation(cudaStream_t stream, const void* x, void* y, int64_t n, const ExpParams& params,
                                    const ActivationAttrs& act, bool half);
cudaError_t LaunchSpikingNorm(cudaStream_t stream, const void* w, void* y, const AxisSplit& split, int64_t time_steps,
                              bool half);

cudaError_t LaunchSpikingSoftmax(cudaStream_t stream, const void* x, void* y, const AxisSplit& split,
                                 const ExpParams& params, int64_t time_steps, bool shift, bool sigmoid, bool half);

}  // namespace sit
