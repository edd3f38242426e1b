// CPU kernels: SpikingExp in one pass over memory, SpikingNorm in two (sum, then scale),
// SpikingSoftmax fused; split into blocks over onnxruntime's intra-op thread pool, the
// inner loops from the row ops this CPU runs best (row_ops.h).
#pragma once

#include "../include/spiking_op.h"
#include "row_ops.h"

namespace sit {

// A kernel base plus the row ops chosen when the session creates the kernel.
template <class Base>
struct CpuKernel : Base {
  const RowOps* ops = nullptr;
  std::string Init(const Ort::ConstKernelInfo& info) {
    const std::string error = Base::Init(info);
    return error.empty() ? SelectRowOps(&ops) : error;
  }
};

template <typename T>
struct SpikingExpCpu : CpuKernel<ExpKernelBase> {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingNormCpu : CpuKernel<NormKernelBase> {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingSoftmaxCpu : CpuKernel<SoftmaxKernelBase> {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

template <typename T>
struct SpikingActivationCpu : CpuKernel<ActivationKernelBase> {
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
};

using SpikingActivationCpuF32 =
    SpikingOp<SpikingActivationCpu<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false>;
using SpikingActivationCpuF16 =
    SpikingOp<SpikingActivationCpu<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, false>;
using SpikingExpCpuF32 = SpikingOp<SpikingExpCpu<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false>;
using SpikingExpCpuF16 = SpikingOp<SpikingExpCpu<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, false>;
using SpikingNormCpuF32 = SpikingOp<SpikingNormCpu<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false>;
using SpikingNormCpuF16 = SpikingOp<SpikingNormCpu<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, false>;
using SpikingSoftmaxCpuF32 = SpikingOp<SpikingSoftmaxCpu<float>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false>;
using SpikingSoftmaxCpuF16 =
    SpikingOp<SpikingSoftmaxCpu<Ort::Float16_t>, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, false>;

}  // namespace sit
