// SI-exp elementwise and SI-norm with one block per softmax row (warp + block reduction).
#include <cuda_fp16.h>

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

template <typename T>
__global__ void SpikingExpKernel(const T* x, T* y, int64_t n, ExpParams p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    Store(y, i, SiExp(Load(x, i), p));
  }
}

__device__ __forceinline__ float NormValue(float w, float v_th, float steps) {
  if (v_th > 0.f) {
    float ratio = __fdiv_rn(w, v_th);
    if (steps > 0.f) {
      ratio = floorf(__fmul_rn(ratio, steps));
      ratio = __fdiv_rn(ratio < 0.f ? 0.f : ratio, steps);
    }
    return ratio;
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
    const float v_th = row_sum;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) Store(out, i, NormValue(Load(in, i), v_th, steps));
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
    for (int64_t i = 0; i < n; ++i) Store(y, base + i * inner, NormValue(Load(w, base + i * inner), sum, steps));
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
    const float v_th = BlockReduce<false>(sum, scratch);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = Prepare(Load(in, i), sigmoid);
      Store(out, i, NormValue(SiExp(shift ? __fsub_rn(v, peak) : v, p), v_th, steps));
    }
  }
}

// Fused Spiking-Softmax for rows up to 32*kPerLane long (attention rows: 1024 and under): one
// warp per row, the row held in registers (kPerLane values per lane, lane-strided so loads and
// stores coalesce), reductions by butterfly shuffles. One read and one write per element, SI-exp
// computed once, no shared memory and no block barriers.
template <typename T, int kPerLane>
__global__ void SpikingSoftmaxWarpKernel(const T* x, T* y, int64_t rows, int n, ExpParams p, float steps, bool shift,
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
      v[j] = i < n ? Prepare(Load(in, i), sigmoid) : -INFINITY;
      peak = RowMax(peak, v[j]);
    }
    if (shift) {
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) peak = RowMax(peak, __shfl_xor_sync(0xffffffffu, peak, offset));
    }
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (lane + 32 * j < n) {
        v[j] = SiExp(shift ? __fsub_rn(v[j], peak) : v[j], p);
        sum += v[j];
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int i = lane + 32 * j;
      if (i < n) Store(out, i, NormValue(v[j], sum, steps));
    }
  }
}

constexpr int kWarpRowThreads = 128;  // 4 rows per block

template <typename T, int kPerLane>
void LaunchSoftmaxWarps(cudaStream_t stream, const T* x, T* y, const AxisSplit& s, const ExpParams& p, float steps,
                        bool shift, bool sigmoid) {
  const int64_t rows_per_block = kWarpRowThreads / 32;
  const int64_t blocks = (s.outer + rows_per_block - 1) / rows_per_block;
  const unsigned int grid = static_cast<unsigned int>(blocks < 65535 * 32 ? blocks : 65535 * 32);
  SpikingSoftmaxWarpKernel<T, kPerLane><<<grid, kWarpRowThreads, 0, stream>>>(x, y, s.outer, static_cast<int>(s.n), p,
                                                                              steps, shift, sigmoid);
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
    for (int64_t i = 0; i < n; ++i) {
      const float v = Prepare(Load(x, base + i * inner), sigmoid);
      Store(y, base + i * inner, NormValue(SiExp(shift ? __fsub_rn(v, peak) : v, p), sum, steps));
    }
  }
}

unsigned int GridFor(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 65535 * 32 ? (blocks > 0 ? blocks : 1) : 65535 * 32);
}

template <typename T>
cudaError_t LaunchNorm(cudaStream_t stream, const void* w, void* y, const AxisSplit& s, float steps) {
  if (s.inner == 1) {
    const unsigned int grid = static_cast<unsigned int>(s.outer < 65535 * 32 ? s.outer : 65535 * 32);
    SpikingNormRowsKernel<T><<<grid, kRowThreads, 0, stream>>>(static_cast<const T*>(w), static_cast<T*>(y), s.outer,
                                                               s.n, steps);
  } else {
    SpikingNormColumnsKernel<T><<<GridFor(s.outer * s.inner, 256), 256, 0, stream>>>(
        static_cast<const T*>(w), static_cast<T*>(y), s.outer, s.n, s.inner, steps);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchSoftmax(cudaStream_t stream, const void* x, void* y, const AxisSplit& s, const ExpParams& p,
                          float steps, bool shift, bool sigmoid) {
  const auto* in = static_cast<const T*>(x);
  auto* out = static_cast<T*>(y);
  if (s.inner == 1 && s.n <= 1024) {  // a row per warp, in registers
    if (s.n <= 32) LaunchSoftmaxWarps<T, 1>(stream, in, out, s, p, steps, shift, sigmoid);
    else if (s.n <= 64) LaunchSoftmaxWarps<T, 2>(stream, in, out, s, p, steps, shift, sigmoid);
    else if (s.n <= 128) LaunchSoftmaxWarps<T, 4>(stream, in, out, s, p, steps, shift, sigmoid);
    else if (s.n <= 256) LaunchSoftmaxWarps<T, 8>(stream, in, out, s, p, steps, shift, sigmoid);
    else if (s.n <= 512) LaunchSoftmaxWarps<T, 16>(stream, in, out, s, p, steps, shift, sigmoid);
    else LaunchSoftmaxWarps<T, 32>(stream, in, out, s, p, steps, shift, sigmoid);
    return cudaGetLastError();
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
  const int threads = 256;
  const unsigned int grid = GridFor(n, threads);
  if (half) {
    SpikingExpKernel<__half><<<grid, threads, 0, stream>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n,
                                                           params);
  } else {
    SpikingExpKernel<float><<<grid, threads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), n,
                                                          params);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSpikingNorm(cudaStream_t stream, const void* w, void* y, const AxisSplit& split, int64_t time_steps,
                              bool half) {
  const float steps = static_cast<float>(time_steps);
  return half ? LaunchNorm<__half>(stream, w, y, split, steps) : LaunchNorm<float>(stream, w, y, split, steps);
}

}  // namespace sit
