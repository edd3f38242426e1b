#include "spiking_cuda.h"

#include <type_traits>

#include "spiking_launch.h"

namespace sit {
namespace {

OrtStatusPtr CudaStatus(const char* op, cudaError_t error) {
  if (error == cudaSuccess) return nullptr;
  return Ort::GetApi().CreateStatus(ORT_EP_FAIL, (std::string(op) + ": CUDA error: " + cudaGetErrorString(error)).c_str());
}

cudaStream_t Stream(Ort::KernelContext& ctx) { return static_cast<cudaStream_t>(ctx.GetGPUComputeStream()); }

template <typename T>
constexpr bool kHalf = std::is_same_v<T, Ort::Float16_t>;

}  // namespace

template <typename T>
OrtStatusPtr SpikingExpCuda<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeSameShape(kName, context, [&](Ort::KernelContext& ctx, SameShapeIO& io) {
    return CudaStatus(kName, LaunchSpikingExp(Stream(ctx), io.input.GetTensorRawData(),
                                              io.output.GetTensorMutableRawData(), io.count, params, kHalf<T>));
  });
}

template <typename T>
OrtStatusPtr SpikingActivationCuda<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeSameShape(kName, context, [&](Ort::KernelContext& ctx, SameShapeIO& io) {
    return CudaStatus(kName, LaunchSpikingActivation(Stream(ctx), io.input.GetTensorRawData(),
                                                     io.output.GetTensorMutableRawData(), io.count, exp.params, act,
                                                     kHalf<T>));
  });
}

template <typename T>
OrtStatusPtr SpikingNormCuda<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeAlongAxis(kName, context, attrs.axis, [&](Ort::KernelContext& ctx, SameShapeIO& io,
                                                          const AxisSplit& split) {
    return CudaStatus(kName, LaunchSpikingNorm(Stream(ctx), io.input.GetTensorRawData(),
                                               io.output.GetTensorMutableRawData(), split, attrs.time_steps, kHalf<T>));
  });
}

template <typename T>
OrtStatusPtr SpikingSoftmaxCuda<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeAlongAxis(kName, context, norm.attrs.axis, [&](Ort::KernelContext& ctx, SameShapeIO& io,
                                                               const AxisSplit& split) {
    return CudaStatus(kName, LaunchSpikingSoftmax(Stream(ctx), io.input.GetTensorRawData(),
                                                  io.output.GetTensorMutableRawData(), split, exp.params,
                                                  norm.attrs.time_steps, shift, sigmoid, kHalf<T>));
  });
}

template struct SpikingExpCuda<float>;
template struct SpikingExpCuda<Ort::Float16_t>;
template struct SpikingActivationCuda<float>;
template struct SpikingActivationCuda<Ort::Float16_t>;
template struct SpikingNormCuda<float>;
template struct SpikingNormCuda<Ort::Float16_t>;
template struct SpikingSoftmaxCuda<float>;
template struct SpikingSoftmaxCuda<Ort::Float16_t>;

}  // namespace sit
