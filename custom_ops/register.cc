// The library's only exported symbol: RegisterCustomOps adds the ai.sit domain with the
// CPU kernels, and the CUDA kernels when built with CUDA. One table; CUDA entries compile out.
#include <memory>
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
#ifdef SIT_USE_CUDA
  sit::SpikingExpCudaF32 exp_cuda_f32;
  sit::SpikingExpCudaF16 exp_cuda_f16;
  sit::SpikingNormCudaF32 norm_cuda_f32;
  sit::SpikingNormCudaF16 norm_cuda_f16;
  sit::SpikingSoftmaxCudaF32 softmax_cuda_f32;
  sit::SpikingSoftmaxCudaF16 softmax_cuda_f16;
#endif

  std::vector<OrtCustomOp*> ops() {
    return {&exp_cpu_f32, &exp_cpu_f16, &norm_cpu_f32, &norm_cpu_f16, &softmax_cpu_f32, &softmax_cpu_f16,
#ifdef SIT_USE_CUDA
            &exp_cuda_f32, &exp_cuda_f16, &norm_cuda_f32, &norm_cuda_f16, &softmax_cuda_f32, &softmax_cuda_f16,
#endif
    };
  }
};

std::mutex registry_mutex;
// Domains must outlive every session that uses them: they live until the process ends.
std::vector<std::unique_ptr<Ort::CustomOpDomain>>& Domains() {
  static auto* domains = new std::vector<std::unique_ptr<Ort::CustomOpDomain>>();
  return *domains;
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
    static auto* registry = new Registry();
    auto domain = std::make_unique<Ort::CustomOpDomain>(sit::kDomain);
    for (OrtCustomOp* op : registry->ops()) domain->Add(op);
    Ort::UnownedSessionOptions(options).Add(*domain);
    Domains().push_back(std::move(domain));
  } catch (const Ort::Exception& exc) {
    return api->CreateStatus(ORT_FAIL, exc.what());
  } catch (const std::exception& exc) {
    return api->CreateStatus(ORT_FAIL, exc.what());
  }
  return nullptr;
}
