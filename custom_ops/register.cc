// The library's only exported symbol: RegisterCustomOps adds the ai.sit domain with the
// CPU kernels, and the CUDA kernels when built with CUDA. One table; CUDA entries compile out.
#include <mutex>
#include <string>
#include <vector>

#include "cpu/spiking_cpu.h"
#ifdef SIT_USE_CUDA
#include "cuda/spiking_cuda.h"
#endif

namespace {

struct Registry {
  sit::SpikingExpCpuF32 exp_cpu_f32;
  sit::SpikingExpCpuF16 exp_cpu_f16;
  sit::SpikingNormCpuF32 norm_cpu_f32;
  sit::SpikingNormCpuF16 norm_cpu_f16;
  sit::SpikingSoftmaxCpuF32 softmax_cpu_f32;
  sit::SpikingSoftmaxCpuF16 softmax_cpu_f16;
  sit::SpikingActivationCpuF32 activation_cpu_f32;
  sit::SpikingActivationCpuF16 activation_cpu_f16;
#ifdef SIT_USE_CUDA
  sit::SpikingExpCudaF32 exp_cuda_f32;
  sit::SpikingExpCudaF16 exp_cuda_f16;
  sit::SpikingNormCudaF32 norm_cuda_f32;
  sit::SpikingNormCudaF16 norm_cuda_f16;
  sit::SpikingSoftmaxCudaF32 softmax_cuda_f32;
  sit::SpikingSoftmaxCudaF16 softmax_cuda_f16;
  sit::SpikingActivationCudaF32 activation_cuda_f32;
  sit::SpikingActivationCudaF16 activation_cuda_f16;
#endif

  std::vector<OrtCustomOp*> ops() {
    return {&exp_cpu_f32, &exp_cpu_f16, &norm_cpu_f32, &norm_cpu_f16, &softmax_cpu_f32, &softmax_cpu_f16,
            &activation_cpu_f32, &activation_cpu_f16,
#ifdef SIT_USE_CUDA
            &exp_cuda_f32, &exp_cuda_f16, &norm_cuda_f32, &norm_cuda_f16, &softmax_cuda_f32, &softmax_cuda_f16,
            &activation_cuda_f32, &activation_cuda_f16,
#endif
    };
  }
};

std::mutex registry_mutex;

// One domain with every op, made on the first registration and shared by every session after it
// (sessions only keep a pointer to it): it lives until the process ends, and registering the
// library again costs nothing more.
Ort::CustomOpDomain& SharedDomain() {
  static auto* registry = new Registry();
  static auto* domain = [] {
    auto* made = new Ort::CustomOpDomain(sit::kDomain);
    for (OrtCustomOp* op : registry->ops()) made->Add(op);
    return made;
  }();
  return *domain;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    const OrtApi* oldest = api_base->GetApi(1);
    const std::string message = std::string("sit-onnx custom ops need onnxruntime with C API ") +
                                std::to_string(ORT_API_VERSION) + " (release 1." + std::to_string(ORT_API_VERSION) +
                                ") or newer; this runtime is " + api_base->GetVersionString();
    return oldest ? oldest->CreateStatus(ORT_FAIL, message.c_str()) : nullptr;
  }
  Ort::InitApi(api);
  try {
    std::lock_guard<std::mutex> lock(registry_mutex);
    Ort::UnownedSessionOptions(options).Add(SharedDomain());
  } catch (const Ort::Exception& exc) {
    return api->CreateStatus(ORT_FAIL, exc.what());
  } catch (const std::exception& exc) {
    return api->CreateStatus(ORT_FAIL, exc.what());
  }
  return nullptr;
}
