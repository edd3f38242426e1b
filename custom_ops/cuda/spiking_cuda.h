// CUDA kernels' ORT side: read the tensors, launch on the stream onnxruntime hands us.
#pragma once

#include "../include/spiking_op.h"

namespace sit {

template <typename T>
struct SpikingExpCuda : ExpKernelBase {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingNormCuda : NormKernelBase {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingSoftmaxCuda : SoftmaxKernelBase {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingActivationCuda : ActivationKernelBase {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

using SpikingActivationCudaF32 =
    SpikingOp<SpikingActivationCuda<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, true>;
using SpikingActivationCudaF16 =
    SpikingOp<SpikingActivationCuda<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, true>;
using SpikingExpCudaF32 = SpikingOp<SpikingExpCuda<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, true>;
using SpikingExpCudaF16 = SpikingOp<SpikingExpCuda<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, true>;
using SpikingNormCudaF32 = SpikingOp<SpikingNormCuda<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, true>;
using SpikingNormCudaF16 = SpikingOp<SpikingNormCuda<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, true>;
using SpikingSoftmaxCudaF32 = SpikingOp<SpikingSoftmaxCuda<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, true>;
using SpikingSoftmaxCudaF16 =
    SpikingOp<SpikingSoftmaxCuda<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, true>;

}  // namespace sit
