#include "row_ops.h"

#include <cstdlib>

namespace sit {

namespace {

#ifdef SIT_X86_SIMD
bool CpuHas(const char* isa) {
  __builtin_cpu_init();
  if (std::string(isa) == "avx512") return __builtin_cpu_supports("avx512f");
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

}  // namespace

std::string SelectRowOps(const RowOps** out) {
  const char* wanted = std::getenv("SIT_ONNX_CPU_ISA");
  const std::string name = wanted ? wanted : "";
  if (name == "portable") {
    *out = &kRowOpsPortable;
    return "";
  }
#ifdef SIT_X86_SIMD
  for (const RowOps* ops : {&kRowOpsAvx512, &kRowOpsAvx2}) {
    if (name.empty() || name == ops->isa) {
      if (CpuHas(ops->isa)) {
        *out = ops;
        return "";
      }
      if (!name.empty()) return "SIT_ONNX_CPU_ISA=" + name + " but this CPU lacks " + name;
    }
  }
#endif
  if (name.empty()) {
    *out = &kRowOpsPortable;
    return "";
  }
#ifdef SIT_X86_SIMD
  const char* built = "avx512, avx2, portable";
#else
  const char* built = "portable";
#endif
  return "SIT_ONNX_CPU_ISA=" + name + " is not a kernel set of this build (" + built + ")";
}

}  // namespace sit
