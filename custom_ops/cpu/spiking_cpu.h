// CPU kernels: SpikingExp in one pass over memory, SpikingNorm in two (sum, then scale),
// both split into blocks over onnxruntime's intra-op thread pool.
#pragma once

#include "../include/spiking_op.h"

namespace sit {

template <typename T>
struct SpikingExpCpu : ExpKernelBase {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingNormCpu : NormKernelBase {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingSoftmaxCpu : SoftmaxKernelBase {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

using SpikingExpCpuF32 = SpikingOp<SpikingExpCpu<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false>;
using SpikingExpCpuF16 = SpikingOp<SpikingExpCpu<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, false>;
using SpikingNormCpuF32 = SpikingOp<SpikingNormCpu<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false>;
using SpikingNormCpuF16 = SpikingOp<SpikingNormCpu<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, false>;
using SpikingSoftmaxCpuF32 = SpikingOp<SpikingSoftmaxCpu<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false>;
using SpikingSoftmaxCpuF16 =
    SpikingOp<SpikingSoftmaxCpu<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, false>;

}  // namespace sit
