#include "spiking_cuda.h"

#include <type_traits>

#include "spiking_launch.h"

namespace sit {
namespace {

OrtStatusPtr CudaStatus(const char* op, cudaError_t error) {
  if (error == cudaSuccess) return nullptr;
  return Ort::GetApi().CreateStatus(ORT_EP_FAIL, (std::string(op) + ": CUDA error: " + cudaGetErrorString(error)).c_str());
}

}  // namespace

template <typename T>
OrtStatusPtr SpikingExpCuda<T>::ComputeV2(OrtKernelContext* context) {
  return Guarded(kName, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto input = ctx.GetInput(0);
    auto info = input.GetTensorTypeAndShapeInfo();
    auto output = ctx.GetOutput(0, info.GetShape());
    const int64_t n = static_cast<int64_t>(info.GetElementCount());
    if (n == 0) return nullptr;
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    return CudaStatus(kName, LaunchSpikingExp(stream, input.GetTensorRawData(), output.GetTensorMutableRawData(), n,
                                              params, std::is_same_v<T, Ort::Float16_t>));
  });
}

template <typename T>
OrtStatusPtr SpikingNormCuda<T>::ComputeV2(OrtKernelContext* context) {
  return Guarded(kName, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto input = ctx.GetInput(0);
    auto info = input.GetTensorTypeAndShapeInfo();
    auto shape = info.GetShape();
    AxisSplit split;
    std::string error = SplitAtAxis(shape, attrs.axis, &split);
    if (!error.empty()) return MakeError(std::string(kName) + ": " + error);
    auto output = ctx.GetOutput(0, shape);
    if (info.GetElementCount() == 0) return nullptr;
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    return CudaStatus(kName, LaunchSpikingNorm(stream, input.GetTensorRawData(), output.GetTensorMutableRawData(),
                                               split, attrs.time_steps, std::is_same_v<T, Ort::Float16_t>));
  });
}

template <typename T>
OrtStatusPtr SpikingSoftmaxCuda<T>::ComputeV2(OrtKernelContext* context) {
  return Guarded(kName, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto input = ctx.GetInput(0);
    auto info = input.GetTensorTypeAndShapeInfo();
    auto shape = info.GetShape();
    AxisSplit split;
    std::string error = SplitAtAxis(shape, norm.attrs.axis, &split);
    if (!error.empty()) return MakeError(std::string(kName) + ": " + error);
    auto output = ctx.GetOutput(0, shape);
    if (info.GetElementCount() == 0) return nullptr;
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    return CudaStatus(kName, LaunchSpikingSoftmax(stream, input.GetTensorRawData(), output.GetTensorMutableRawData(),
                                                  split, exp.params, norm.attrs.time_steps, shift, sigmoid,
                                                  std::is_same_v<T, Ort::Float16_t>));
  });
}

template struct SpikingExpCuda<float>;
template struct SpikingExpCuda<Ort::Float16_t>;
template struct SpikingNormCuda<float>;
template struct SpikingNormCuda<Ort::Float16_t>;
template struct SpikingSoftmaxCuda<float>;
template struct SpikingSoftmaxCuda<Ort::Float16_t>;

}  // namespace sit
