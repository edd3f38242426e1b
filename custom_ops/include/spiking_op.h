// The ORT custom-op shell shared by every kernel: names, types, provider, and kernel
// creation that turns bad attributes into an error status naming the node, so a
// session refuses them when it is created instead of failing at run time.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <string>

#include "spiking_attrs.h"

namespace sit {

inline OrtStatusPtr MakeError(const std::string& message) {
  return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, message.c_str());
}

inline std::string NodeLabel(const char* op, const Ort::ConstKernelInfo& info) {
  std::string name;
  try {
    name = info.GetNodeName();
  } catch (const Ort::Exception&) {
  }
  return std::string(op) + " node '" + name + "'";
}

// Whether the node has attribute `name` as any of int, float, string, ints or floats.
inline bool HasAttribute(const OrtKernelInfo* raw, const char* name) {
  const OrtApi& api = Ort::GetApi();
  int64_t i = 0;
  float f = 0.f;
  size_t size = 0;
  OrtStatus* statuses[] = {api.KernelInfoGetAttribute_int64(raw, name, &i),
                           api.KernelInfoGetAttribute_float(raw, name, &f),
                           api.KernelInfoGetAttribute_string(raw, name, nullptr, &size),
                           api.KernelInfoGetAttributeArray_float(raw, name, nullptr, &size),
                           api.KernelInfoGetAttributeArray_int64(raw, name, nullptr, &size)};
  bool found = false;
  for (OrtStatus* s : statuses) {
    if (s) api.ReleaseStatus(s);
    else found = true;
  }
  return found;
}

// An optional int attribute: absent -> `fallback`; present with another type (a float, a string,
// a list) -> an error, never silently the default (SpikingNorm with axis=0.0 must not normalise
// along -1).
inline std::string ReadIntAttribute(const Ort::ConstKernelInfo& info, const char* name, int64_t fallback,
                                    int64_t* out) {
  const OrtApi& api = Ort::GetApi();
  const OrtKernelInfo* raw = info;
  int64_t value = 0;
  if (OrtStatus* status = api.KernelInfoGetAttribute_int64(raw, name, &value)) {
    api.ReleaseStatus(status);
    if (HasAttribute(raw, name)) return std::string(name) + " must be an int attribute";
    *out = fallback;
    return "";
  }
  *out = value;
  return "";
}

// A float attribute: absent -> `fallback`, or an error when `required`; another type -> an error.
inline std::string ReadFloatAttribute(const Ort::ConstKernelInfo& info, const char* name, bool required,
                                      float fallback, float* out) {
  const OrtApi& api = Ort::GetApi();
  const OrtKernelInfo* raw = info;
  float value = 0.f;
  if (OrtStatus* status = api.KernelInfoGetAttribute_float(raw, name, &value)) {
    api.ReleaseStatus(status);
    if (HasAttribute(raw, name)) return std::string(name) + " must be a float attribute";
    if (required) return std::string("missing float attribute ") + name;
    *out = fallback;
    return "";
  }
  *out = value;
  return "";
}

// A required, non-empty list of floats, or an error naming the attribute. onnxruntime says only "No
// attribute with this name is defined" for a missing one, and reads one of another type (ints, a
// float, a string) as an empty list: "got 2, 0, 2" lengths for resets=[1, 1] told nobody why.
inline std::string ReadFloatsAttribute(const Ort::ConstKernelInfo& info, const char* name, std::vector<float>* out) {
  try {
    *out = info.GetAttributes<float>(name);
  } catch (const Ort::Exception&) {
    if (HasAttribute(info, name)) return std::string(name) + " must be a non-empty list of floats";
    return std::string("missing attribute ") + name + " (a list of floats)";
  }
  return out->empty() ? std::string(name) + " must be a non-empty list of floats" : "";
}

// Reads the SI-exp attributes (thresholds, resets, weights).
struct ExpKernelBase {
  static constexpr const char* kName = kSpikingExp;
  ExpParams params;
  std::string Init(const Ort::ConstKernelInfo& info) {
    std::vector<float> thresholds, resets, weights;
    std::string error = ReadFloatsAttribute(info, "thresholds", &thresholds);
    if (error.empty()) error = ReadFloatsAttribute(info, "resets", &resets);
    if (error.empty()) error = ReadFloatsAttribute(info, "weights", &weights);
    return error.empty() ? CheckExpParams(thresholds, resets, weights, &params) : error;
  }
};

// Reads the SI-norm attributes (axis, time_steps); checks the axis against the rank when known.
struct NormKernelBase {
  static constexpr const char* kName = kSpikingNorm;
  NormAttrs attrs;
  std::string Init(const Ort::ConstKernelInfo& info) {
    int64_t axis = -1, time_steps = 0, rank = -1;
    std::string error = ReadIntAttribute(info, "axis", -1, &axis);
    if (error.empty()) error = ReadIntAttribute(info, "time_steps", 0, &time_steps);
    if (!error.empty()) return error;
    try {
      auto type = info.GetInputTypeInfo(0);
      rank = static_cast<int64_t>(type.GetTensorTypeAndShapeInfo().GetDimensionsCount());
      if (rank == 0) rank = -1;  // an unknown rank reads as 0; scalars fail at run time
    } catch (const Ort::Exception&) {
    }
    return CheckNormAttrs(axis, time_steps, rank, &attrs);
  }
};

// SpikingActivation: the SI-exp neuron with another parameter set, plus its bias, range and tails.
struct ActivationKernelBase {
  static constexpr const char* kName = kSpikingActivation;
  ExpKernelBase exp;
  ActivationAttrs act;
  std::string Init(const Ort::ConstKernelInfo& info) {
    std::string error = exp.Init(info);
    float low = 0.f, high = 0.f, bias = 0.f;
    int64_t gate = 0;
    if (error.empty()) error = ReadFloatAttribute(info, "low", true, 0.f, &low);
    if (error.empty()) error = ReadFloatAttribute(info, "high", true, 0.f, &high);
    if (error.empty()) error = ReadFloatAttribute(info, "bias", false, 0.f, &bias);
    if (error.empty()) error = ReadIntAttribute(info, "gate", 0, &gate);
    if (!error.empty()) return error;
    std::vector<float> tails;
    error = ReadFloatsAttribute(info, "tails", &tails);
    if (!error.empty()) return error;
    return CheckActivationAttrs(low, high, bias, tails, gate, &act);
  }
};

// SpikingSoftmax: [Sigmoid] -> [max-shift] -> SI-exp -> SI-norm in one kernel (one op, fewer memory passes).
struct SoftmaxKernelBase {
  static constexpr const char* kName = kSpikingSoftmax;
  ExpKernelBase exp;
  NormKernelBase norm;
  bool shift = true;
  bool sigmoid = false;
  std::string Init(const Ort::ConstKernelInfo& info) {
    std::string error = exp.Init(info);
    if (error.empty()) error = norm.Init(info);
    int64_t shift_attr = 1, sigmoid_attr = 0;
    if (error.empty()) error = ReadIntAttribute(info, "shift", 1, &shift_attr);
    if (error.empty()) error = ReadIntAttribute(info, "sigmoid", 0, &sigmoid_attr);
    if (error.empty() && (shift_attr < 0 || shift_attr > 1 || sigmoid_attr < 0 || sigmoid_attr > 1)) {
      error = "shift and sigmoid must be 0 or 1";
    }
    shift = shift_attr == 1;
    sigmoid = sigmoid_attr == 1;
    return error;
  }
};

template <typename Kernel, ONNXTensorElementDataType Type, bool Cuda>
struct SpikingOp : Ort::CustomOpBase<SpikingOp<Kernel, Type, Cuda>, Kernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** op_kernel) const {
    Ort::ConstKernelInfo kernel_info(info);
    auto kernel = new Kernel();
    std::string error;
    try {
      error = kernel->Init(kernel_info);
    } catch (const Ort::Exception& exc) {
      error = exc.what();
    }
    if (!error.empty()) {
      delete kernel;
      return MakeError(NodeLabel(Kernel::kName, kernel_info) + ": " + error);
    }
    *op_kernel = kernel;
    return nullptr;
  }
  const char* GetName() const { return Kernel::kName; }
  const char* GetExecutionProviderType() const { return Cuda ? "CUDAExecutionProvider" : "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t) const { return Type; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return Type; }
};

// Input 0 and an output 0 of the same shape: what every kernel here reads and writes.
struct SameShapeIO {
  Ort::ConstValue input;
  Ort::UnownedValue output;
  std::vector<int64_t> shape;
  int64_t count;
};

inline SameShapeIO OpenSameShape(Ort::KernelContext& ctx) {
  auto input = ctx.GetInput(0);
  auto info = input.GetTensorTypeAndShapeInfo();
  auto shape = info.GetShape();
  auto output = ctx.GetOutput(0, shape);
  return {input, output, shape, static_cast<int64_t>(info.GetElementCount())};
}

// The outer x n x inner split at `axis`, or an error status naming the op.
inline OrtStatusPtr SplitOrError(const char* op, const std::vector<int64_t>& shape, int64_t axis, AxisSplit* split) {
  const std::string error = SplitAtAxis(shape, axis, split);
  return error.empty() ? nullptr : MakeError(std::string(op) + ": " + error);
}

// Runs a kernel body, turning C++ exceptions into an error status at the C boundary.
template <typename Body>
OrtStatusPtr Guarded(const char* op, Body&& body) {
  try {
    return body();
  } catch (const Ort::Exception& exc) {
    return MakeError(std::string(op) + ": " + exc.what());
  } catch (const std::exception& exc) {
    return MakeError(std::string(op) + ": " + exc.what());
  }
}

// The frame of every kernel's Compute: exceptions become an error status naming the op, the
// output takes the input's shape, and an empty tensor needs no work. Body: (ctx, io) -> status.
template <typename Body>
OrtStatusPtr ComputeSameShape(const char* op, OrtKernelContext* context, Body&& body) {
  return Guarded(op, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto io = OpenSameShape(ctx);
    return io.count == 0 ? nullptr : body(ctx, io);
  });
}

// The same for ops along an axis: Body also gets the outer x n x inner split. An axis out of
// range for this input's rank is an error even for an empty tensor.
template <typename Body>
OrtStatusPtr ComputeAlongAxis(const char* op, OrtKernelContext* context, int64_t axis, Body&& body) {
  return Guarded(op, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto io = OpenSameShape(ctx);
    AxisSplit split;
    if (OrtStatusPtr error = SplitOrError(op, io.shape, axis, &split)) return error;
    return io.count == 0 ? nullptr : body(ctx, io, split);
  });
}

}  // namespace sit
