// SI-exp elementwise, SI-norm and the fused Spiking-Softmax. The hot kernels (SI-exp, and a warp per
// row for rows up to 1024) know K at compile time: K is padded up to one of a few sizes with steps
// whose reset and weight are 0 (they change nothing, exactly), so every step's T, h and d are
// operands read straight from the kernel's parameter bank, and a step is one compare and two
// predicated adds.
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "spiking_launch.h"

namespace sit {
namespace {

template <typename T>
__device__ __forceinline__ float Load(const T* p, int64_t i);
template <>
__device__ __forceinline__ float Load<float>(const float* p, int64_t i) { return p[i]; }
template <>
__device__ __forceinline__ float Load<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }

template <typename T>
__device__ __forceinline__ void Store(T* p, int64_t i, float v);
template <>
__device__ __forceinline__ void Store<float>(float* p, int64_t i, float v) { p[i] = v; }
template <>
__device__ __forceinline__ void Store<__half>(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// SI-exp of one value: v=x; z=(v>=T[t]); v-=h[t]*z; out+=d[t]*z; NaN in, NaN out.
__device__ __forceinline__ float SiExp(float in, const ExpParams& p) {
  float v = in, acc = 0.f;
#pragma unroll 4
  for (int t = 0; t < p.steps; ++t) {
    const bool fire = v >= p.thresholds[t];
    v = __fsub_rn(v, fire ? p.resets[t] : 0.f);
    acc = __fadd_rn(acc, fire ? p.weights[t] : 0.f);
  }
  return in != in ? in : acc;
}

// The same with K fixed at compile time (K >= p.steps; the steps past p.steps have h = d = 0),
// branch-free: z = (v >= T) as 1.0 or 0.0 (one FSET), then v - h*z and acc + d*z as FMAs. Each FMA
// rounds once, so for z = 1 it is exactly v - h (acc + d) and for z = 0 it leaves v (acc) as it
// was: the reference's numbers, three instructions a step.
template <int K>
__device__ __forceinline__ float SiExpK(float in, const ExpParams& p) {
  float v = in, acc = 0.f;
#pragma unroll
  for (int t = 0; t < K; ++t) {
    float z;
    asm("set.ge.f32.f32 %0, %1, %2;" : "=f"(z) : "f"(v), "f"(p.thresholds[t]));
    v = __fmaf_rn(-p.resets[t], z, v);
    acc = __fmaf_rn(p.weights[t], z, acc);
  }
  return in != in ? in : acc;
}

// Four consecutive elements, as one 16-byte (float) or 8-byte (half) access when aligned.
struct Four {
  float v[4];
};

template <typename T>
__device__ __forceinline__ Four LoadFour(const T* p, int64_t i);
template <>
__device__ __forceinline__ Four LoadFour<float>(const float* p, int64_t i) {
  const float4 q = *reinterpret_cast<const float4*>(p + i);
  return {{q.x, q.y, q.z, q.w}};
}
template <>
__device__ __forceinline__ Four LoadFour<__half>(const __half* p, int64_t i) {
  const uint2 q = *reinterpret_cast<const uint2*>(p + i);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&q.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&q.y));
  return {{a.x, a.y, b.x, b.y}};
}

template <typename T>
__device__ __forceinline__ void StoreFour(T* p, int64_t i, const Four& f);
template <>
__device__ __forceinline__ void StoreFour<float>(float* p, int64_t i, const Four& f) {
  *reinterpret_cast<float4*>(p + i) = make_float4(f.v[0], f.v[1], f.v[2], f.v[3]);
}
template <>
__device__ __forceinline__ void StoreFour<__half>(__half* p, int64_t i, const Four& f) {
  uint2 q;
  *reinterpret_cast<__half2*>(&q.x) = __floats2half2_rn(f.v[0], f.v[1]);
  *reinterpret_cast<__half2*>(&q.y) = __floats2half2_rn(f.v[2], f.v[3]);
  *reinterpret_cast<uint2*>(p + i) = q;
}

// What SpikingExp writes: SI-exp itself.
struct ExpOnly {
  __device__ __forceinline__ float operator()(float, float acc) const { return acc; }
};

// What SpikingActivation writes: acc + bias on [low, high] (and for NaN; a gate: x times that),
// else that side's tail, slope * x + intercept in two roundings (a slope of 0: the intercept), as
// the CPU kernels.
struct ActivationFinish {
  ActivationAttrs a;
  __device__ __forceinline__ float operator()(float x, float acc) const {
    if (x < a.low) return a.tails[0] == 0.f ? a.tails[1] : __fadd_rn(__fmul_rn(a.tails[0], x), a.tails[1]);
    if (x > a.high) return a.tails[2] == 0.f ? a.tails[3] : __fadd_rn(__fmul_rn(a.tails[2], x), a.tails[3]);
    const float neuron = __fadd_rn(acc, a.bias);
    return a.gate ? __fmul_rn(x, neuron) : neuron;
  }
};

// SI-exp, four elements per thread (independent chains for the scheduler to interleave); with
// kVector the four are one aligned access, else four plain ones. The tail (< 4) goes element-wise.
// `finish(x, SI-exp(x))` is what is stored.
template <typename T, int K, bool kVector, class Finish>
__global__ void SpikingExpKernel(const T* x, T* y, int64_t n, ExpParams p, Finish finish) {
  const int64_t groups = n / 4;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < groups; g += stride) {
    Four f;
    if (kVector) {
      f = LoadFour(x, 4 * g);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) f.v[j] = Load(x, 4 * g + j);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) f.v[j] = finish(f.v[j], SiExpK<K>(f.v[j], p));
    if (kVector) {
      StoreFour(y, 4 * g, f);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) Store(y, 4 * g + j, f.v[j]);
    }
  }
  if (blockIdx.x == 0 && threadIdx.x < n - 4 * groups) {
    const int64_t i = 4 * groups + threadIdx.x;
    const float in = Load(x, i);
    Store(y, i, finish(in, SiExpK<K>(in, p)));
  }
}

// p with steps past p.steps made inert (h = d = 0, T = 0) up to `padded`.
ExpParams Padded(const ExpParams& p, int padded) {
  ExpParams q = p;
  for (int t = p.steps; t < padded; ++t) {
    q.thresholds[t] = 0.f;
    q.resets[t] = 0.f;
    q.weights[t] = 0.f;
  }
  q.steps = padded;
  return q;
}

// Calls f(std::integral_constant<int, K>{}, padded params) for the padded K that holds p.steps.
template <typename F>
cudaError_t WithSteps(const ExpParams& p, F&& f) {
#define SIT_STEPS_CASE(K) \
  if (p.steps <= K) return f(std::integral_constant<int, K>{}, Padded(p, K));
  SIT_STEPS_CASE(4)
  SIT_STEPS_CASE(8)
  SIT_STEPS_CASE(12)
  SIT_STEPS_CASE(16)
  SIT_STEPS_CASE(24)
  SIT_STEPS_CASE(32)
  SIT_STEPS_CASE(48)
  SIT_STEPS_CASE(64)
#undef SIT_STEPS_CASE
  return cudaErrorInvalidValue;  // CheckExpParams keeps steps <= kMaxSteps = 64
}

// SI-norm of one weight given its row's threshold v_th and 1/v_th: w * (1/v_th) in the amplified
// mode (as the CPU kernels, the function body and the reference compute it: the same bits), else
// max(floor(N * (w / v_th)), 0) / N. V_th <= 0 spikes nowhere; a NaN threshold gives NaN.
__device__ __forceinline__ float NormValue(float w, float v_th, float inv, float steps) {
  if (v_th > 0.f) {
    if (steps > 0.f) {
      const float count = floorf(__fmul_rn(__fdiv_rn(w, v_th), steps));
      return __fdiv_rn(count < 0.f ? 0.f : count, steps);
    }
    return __fmul_rn(w, inv);
  }
  return v_th != v_th ? v_th : 0.f;
}

constexpr int kRowThreads = 256;

// Axis is the last dimension: one block per row; sum with warp shuffles, then scale.
template <typename T>
__global__ void SpikingNormRowsKernel(const T* w, T* y, int64_t rows, int64_t n, float steps) {
  __shared__ float warp_sums[kRowThreads / 32];
  __shared__ float row_sum;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* in = w + row * n;
    T* out = y + row * n;
    float sum = 0.f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += Load(in, i);
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = sum;
    __syncthreads();
    if (threadIdx.x < 32) {
      float s = threadIdx.x < (blockDim.x >> 5) ? warp_sums[threadIdx.x] : 0.f;
      for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_down_sync(0xffffffffu, s, offset);
      if (threadIdx.x == 0) row_sum = s;
    }
    __syncthreads();
    const float v_th = row_sum, inv = __frcp_rn(v_th);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) Store(out, i, NormValue(Load(in, i), v_th, inv, steps));
    __syncthreads();
  }
}

// Axis in the middle: one thread per (outer, inner) column, reads coalesced across inner.
template <typename T>
__global__ void SpikingNormColumnsKernel(const T* w, T* y, int64_t outer, int64_t n, int64_t inner, float steps) {
  const int64_t columns = outer * inner;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < columns;
       c += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t base = (c / inner) * n * inner + (c % inner);
    float sum = 0.f;
    for (int64_t i = 0; i < n; ++i) sum += Load(w, base + i * inner);
    const float inv = __frcp_rn(sum);
    for (int64_t i = 0; i < n; ++i) {
      Store(y, base + i * inner, NormValue(Load(w, base + i * inner), sum, inv, steps));
    }
  }
}


// The max-shift's max. fmaxf passes over a NaN; the NaN still turns its own SI-exp, hence the
// row's sum and the whole row, into NaN, as numpy's NaN max does.
__device__ __forceinline__ float RowMax(float a, float b) { return fmaxf(a, b); }

__device__ __forceinline__ float Prepare(float x, bool sigmoid) {
  return sigmoid ? __fdiv_rn(1.f, __fadd_rn(1.f, expf(-x))) : x;
}

// Block-wide reduction of one float per thread (sum or sticky max); every thread gets the result.
template <bool IsMax>
__device__ float BlockReduce(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_down_sync(0xffffffffu, value, offset);
    value = IsMax ? RowMax(value, other) : value + other;
  }
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = value;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? scratch[threadIdx.x] : (IsMax ? -INFINITY : 0.f);
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_down_sync(0xffffffffu, v, offset);
      v = IsMax ? RowMax(v, other) : v + other;
    }
    if (threadIdx.x == 0) scratch[32] = v;
  }
  __syncthreads();
  const float result = scratch[32];
  __syncthreads();
  return result;
}

// Fused Spiking-Softmax, axis last: one block per row; SI-exp is recomputed in the last pass
// instead of storing it (memory, not arithmetic, bounds this kernel).
template <typename T>
__global__ void SpikingSoftmaxRowsKernel(const T* x, T* y, int64_t rows, int64_t n, ExpParams p, float steps,
                                         bool shift, bool sigmoid) {
  __shared__ float scratch[33];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* in = x + row * n;
    T* out = y + row * n;
    float peak = 0.f;
    if (shift) {
      float m = -INFINITY;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = RowMax(m, Prepare(Load(in, i), sigmoid));
      peak = BlockReduce<true>(m, scratch);
    }
    float sum = 0.f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = Prepare(Load(in, i), sigmoid);
      sum += SiExp(shift ? __fsub_rn(v, peak) : v, p);
    }
    const float v_th = BlockReduce<false>(sum, scratch), inv = __frcp_rn(v_th);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = Prepare(Load(in, i), sigmoid);
      Store(out, i, NormValue(SiExp(shift ? __fsub_rn(v, peak) : v, p), v_th, inv, steps));
    }
  }
}

// Rows up to 32*kPerLane long (attention rows: 1024 and under), one warp per row, the row held in
// registers (kPerLane values per lane, lane-strided so loads and stores coalesce), reductions by
// butterfly shuffles: one read and one write per element, no shared memory, no block barriers.
// K > 0: the fused Spiking-Softmax ([Sigmoid], [max-shift], SI-exp with K padded steps, SI-norm);
// K = 0: SI-norm alone.
template <typename T, int kPerLane, int K>
__global__ void WarpRowsKernel(const T* x, T* y, int64_t rows, int n, ExpParams p, float steps, bool shift,
                               bool sigmoid) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows;
       row += warps) {  // the same for every lane of a warp, so the full-mask shuffles below are safe
    const T* in = x + row * n;
    T* out = y + row * n;
    float v[kPerLane];
    float peak = -INFINITY;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int i = lane + 32 * j;
      if (K > 0) {
        v[j] = i < n ? Prepare(Load(in, i), sigmoid) : -INFINITY;
        peak = RowMax(peak, v[j]);
      } else {
        v[j] = i < n ? Load(in, i) : 0.f;
      }
    }
    if (K > 0 && shift) {
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) peak = RowMax(peak, __shfl_xor_sync(0xffffffffu, peak, offset));
    }
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (lane + 32 * j < n) {
        if (K > 0) v[j] = SiExpK<K>(shift ? __fsub_rn(v[j], peak) : v[j], p);
        sum += v[j];
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const float inv = __frcp_rn(sum);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int i = lane + 32 * j;
      if (i < n) Store(out, i, NormValue(v[j], sum, inv, steps));
    }
  }
}

constexpr int kWarpRowThreads = 128;  // 4 rows per block

template <typename T, int kPerLane, int K>
void LaunchWarpRows(cudaStream_t stream, const T* x, T* y, const AxisSplit& s, const ExpParams& p, float steps,
                    bool shift, bool sigmoid) {
  const int64_t rows_per_block = kWarpRowThreads / 32;
  const int64_t blocks = (s.outer + rows_per_block - 1) / rows_per_block;
  const unsigned int grid = static_cast<unsigned int>(blocks < 65535 * 32 ? blocks : 65535 * 32);
  WarpRowsKernel<T, kPerLane, K>
      <<<grid, kWarpRowThreads, 0, stream>>>(x, y, s.outer, static_cast<int>(s.n), p, steps, shift, sigmoid);
}

// A warp per row, with registers enough for the row's length (s.n <= 1024).
template <typename T, int K>
void LaunchWarpRowsFor(cudaStream_t stream, const T* x, T* y, const AxisSplit& s, const ExpParams& p, float steps,
                       bool shift, bool sigmoid) {
  if (s.n <= 32) LaunchWarpRows<T, 1, K>(stream, x, y, s, p, steps, shift, sigmoid);
  else if (s.n <= 64) LaunchWarpRows<T, 2, K>(stream, x, y, s, p, steps, shift, sigmoid);
  else if (s.n <= 128) LaunchWarpRows<T, 4, K>(stream, x, y, s, p, steps, shift, sigmoid);
  else if (s.n <= 256) LaunchWarpRows<T, 8, K>(stream, x, y, s, p, steps, shift, sigmoid);
  else if (s.n <= 512) LaunchWarpRows<T, 16, K>(stream, x, y, s, p, steps, shift, sigmoid);
  else LaunchWarpRows<T, 32, K>(stream, x, y, s, p, steps, shift, sigmoid);
}

template <typename T>
__global__ void SpikingSoftmaxColumnsKernel(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, ExpParams p,
                                            float steps, bool shift, bool sigmoid) {
  const int64_t columns = outer * inner;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < columns;
       c += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t base = (c / inner) * n * inner + (c % inner);
    float peak = 0.f;
    if (shift) {
      peak = -INFINITY;
      for (int64_t i = 0; i < n; ++i) peak = RowMax(peak, Prepare(Load(x, base + i * inner), sigmoid));
    }
    float sum = 0.f;
    for (int64_t i = 0; i < n; ++i) {
      const float v = Prepare(Load(x, base + i * inner), sigmoid);
      sum += SiExp(shift ? __fsub_rn(v, peak) : v, p);
    }
    const float inv = __frcp_rn(sum);
    for (int64_t i = 0; i < n; ++i) {
      const float v = Prepare(Load(x, base + i * inner), sigmoid);
      Store(y, base + i * inner, NormValue(SiExp(shift ? __fsub_rn(v, peak) : v, p), sum, inv, steps));
    }
  }
}

unsigned int GridFor(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 65535 * 32 ? (blocks > 0 ? blocks : 1) : 65535 * 32);
}

template <typename T>
cudaError_t LaunchNorm(cudaStream_t stream, const void* w, void* y, const AxisSplit& s, float steps) {
  if (s.inner == 1 && s.n <= 1024) {
    LaunchWarpRowsFor<T, 0>(stream, static_cast<const T*>(w), static_cast<T*>(y), s, ExpParams{}, steps, false, false);
  } else if (s.inner == 1) {
    const unsigned int grid = static_cast<unsigned int>(s.outer < 65535 * 32 ? s.outer : 65535 * 32);
    SpikingNormRowsKernel<T><<<grid, kRowThreads, 0, stream>>>(static_cast<const T*>(w), static_cast<T*>(y), s.outer,
                                                               s.n, steps);
  } else {
    SpikingNormColumnsKernel<T><<<GridFor(s.outer * s.inner, 256), 256, 0, stream>>>(
        static_cast<const T*>(w), static_cast<T*>(y), s.outer, s.n, s.inner, steps);
  }
  return cudaGetLastError();
}

template <typename T, class Finish = ExpOnly>
cudaError_t LaunchExp(cudaStream_t stream, const void* x, void* y, int64_t n, const ExpParams& p,
                      Finish finish = Finish{}) {
  const auto* in = static_cast<const T*>(x);
  auto* out = static_cast<T*>(y);
  const int threads = 256;
  const unsigned int grid = GridFor(n / 4 > 0 ? n / 4 : 1, threads);
  const bool vector = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  return WithSteps(p, [&](auto k, const ExpParams& padded) {
    constexpr int K = decltype(k)::value;
    if (vector) {
      SpikingExpKernel<T, K, true><<<grid, threads, 0, stream>>>(in, out, n, padded, finish);
    } else {
      SpikingExpKernel<T, K, false><<<grid, threads, 0, stream>>>(in, out, n, padded, finish);
    }
    return cudaGetLastError();
  });
}

template <typename T>
cudaError_t LaunchSoftmax(cudaStream_t stream, const void* x, void* y, const AxisSplit& s, const ExpParams& p,
                          float steps, bool shift, bool sigmoid) {
  const auto* in = static_cast<const T*>(x);
  auto* out = static_cast<T*>(y);
  if (s.inner == 1 && s.n <= 1024) {  // a row per warp, in registers
    return WithSteps(p, [&](auto k, const ExpParams& padded) {
      LaunchWarpRowsFor<T, decltype(k)::value>(stream, in, out, s, padded, steps, shift, sigmoid);
      return cudaGetLastError();
    });
  }
  if (s.inner == 1) {
    const unsigned int grid = static_cast<unsigned int>(s.outer < 65535 * 32 ? s.outer : 65535 * 32);
    SpikingSoftmaxRowsKernel<T><<<grid, kRowThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                  s.outer, s.n, p, steps, shift, sigmoid);
  } else {
    SpikingSoftmaxColumnsKernel<T><<<GridFor(s.outer * s.inner, 256), 256, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), s.outer, s.n, s.inner, p, steps, shift, sigmoid);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSpikingSoftmax(cudaStream_t stream, const void* x, void* y, const AxisSplit& split,
                                 const ExpParams& params, int64_t time_steps, bool shift, bool sigmoid, bool half) {
  const float steps = static_cast<float>(time_steps);
  return half ? LaunchSoftmax<__half>(stream, x, y, split, params, steps, shift, sigmoid)
              : LaunchSoftmax<float>(stream, x, y, split, params, steps, shift, sigmoid);
}

cudaError_t LaunchSpikingExp(cudaStream_t stream, const void* x, void* y, int64_t n, const ExpParams& params,
                             bool half) {
  return half ? LaunchExp<__half>(stream, x, y, n, params) : LaunchExp<float>(stream, x, y, n, params);
}

cudaError_t LaunchSpikingActivation(cudaStream_t stream, const void* x, void* y, int64_t n, const ExpParams& params,
                                    const ActivationAttrs& act, bool half) {
  const ActivationFinish finish{act};
  return half ? LaunchExp<__half>(stream, x, y, n, params, finish) : LaunchExp<float>(stream, x, y, n, params, finish);
}

cudaError_t LaunchSpikingNorm(cudaStream_t stream, const void* w, void* y, const AxisSplit& split, int64_t time_steps,
                              bool half) {
  const float steps = static_cast<float>(time_steps);
  return half ? LaunchNorm<__half>(stream, w, y, split, steps) : LaunchNorm<float>(stream, w, y, split, steps);
}

}  // namespace sit
