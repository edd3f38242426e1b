#include "spiking_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(SIT_NO_TARGET_CLONES)
#define SIT_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIT_MULTIVERSION
#endif

namespace sit {
namespace {

constexpr int64_t kExpBlock = 16384;  // elements per parallel task
constexpr int kLanes = 128;           // elements stepped together through the K time steps (measured best)

// Rows of length n handed to one thread-pool task: about 16k elements each.
inline int64_t RowsPerTask(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)); }

inline float ToFloat(float v) { return v; }
inline float ToFloat(Ort::Float16_t v) { return v.ToFloat(); }
template <typename T>
inline T FromFloat(float v);
template <>
inline float FromFloat<float>(float v) { return v; }
template <>
inline Ort::Float16_t FromFloat<Ort::Float16_t>(float v) { return Ort::Float16_t(v); }

// SI-exp over n floats: v=x; z=(v>=T[t]); v-=h[t]*z; out+=d[t]*z. NaN in gives NaN out.
// The same float operations in the same order as the numpy reference.
SIT_MULTIVERSION void SiExpFloats(const float* x, float* y, int64_t n, const ExpParams& p) {
  for (int64_t start = 0; start < n; start += kLanes) {
    const int m = static_cast<int>(std::min<int64_t>(kLanes, n - start));
    float v[kLanes], acc[kLanes];
    for (int j = 0; j < kLanes; ++j) {
      v[j] = j < m ? x[start + j] : 0.f;
      acc[j] = 0.f;
    }
    for (int t = 0; t < p.steps; ++t) {
      const float th = p.thresholds[t], h = p.resets[t], d = p.weights[t];
      for (int j = 0; j < kLanes; ++j) {
        const bool fire = v[j] >= th;
        v[j] = v[j] - (fire ? h : 0.f);
        acc[j] = acc[j] + (fire ? d : 0.f);
      }
    }
    for (int j = 0; j < m; ++j) {
      const float in = x[start + j];
      y[start + j] = in != in ? in : acc[j];
    }
  }
}

// SI-norm's output for one element given its row's threshold V_th.
inline float NormValue(float w, float v_th, float steps) {
  if (v_th > 0.f) {
    float ratio = w / v_th;
    if (steps > 0.f) {
      ratio = std::floor(ratio * steps);
      ratio = (ratio < 0.f ? 0.f : ratio) / steps;
    }
    return ratio;
  }
  return v_th != v_th ? v_th : 0.f;
}

// Sum of a contiguous row with 16 independent partial sums (vectorisable without fast-math).
SIT_MULTIVERSION float RowSum(const float* w, int64_t n) {
  float partial[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) partial[j] += w[i + j];
  float total = 0.f;
  for (; i < n; ++i) total += w[i];
  for (int j = 0; j < 16; ++j) total += partial[j];
  return total;
}

// Max of a contiguous row; NaN if the row holds one (as numpy's max).
SIT_MULTIVERSION float RowMax(const float* x, int64_t n) {
  float partial[16];
  bool nan = false;
  for (int j = 0; j < 16; ++j) partial[j] = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) {
      const float v = x[i + j];
      nan |= v != v;
      partial[j] = partial[j] < v ? v : partial[j];
    }
  float best = -INFINITY;
  for (; i < n; ++i) {
    nan |= x[i] != x[i];
    best = best < x[i] ? x[i] : best;
  }
  for (int j = 0; j < 16; ++j) best = best < partial[j] ? partial[j] : best;
  return nan ? NAN : best;
}

SIT_MULTIVERSION void ScaleRow(const float* w, float* y, int64_t n, float v_th, float steps) {
  if (v_th > 0.f && steps == 0.f) {
    for (int64_t i = 0; i < n; ++i) y[i] = w[i] / v_th;
    return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] = NormValue(w[i], v_th, steps);
}

template <typename T>
struct ExpJob {
  const T* x;
  T* y;
  int64_t n;
  const ExpParams* params;
};

template <typename T>
void ExpTask(void* data, size_t task) {
  auto& job = *static_cast<ExpJob<T>*>(data);
  const int64_t begin = static_cast<int64_t>(task) * kExpBlock;
  const int64_t count = std::min(kExpBlock, job.n - begin);
  if constexpr (std::is_same_v<T, float>) {
    SiExpFloats(job.x + begin, job.y + begin, count, *job.params);
  } else {
    std::vector<float> buffer(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) buffer[i] = ToFloat(job.x[begin + i]);
    SiExpFloats(buffer.data(), buffer.data(), count, *job.params);
    for (int64_t i = 0; i < count; ++i) job.y[begin + i] = FromFloat<T>(buffer[i]);
  }
}

template <typename T>
struct NormJob {
  const T* w;
  T* y;
  AxisSplit split;
  float steps;
  int64_t inner_block;  // inner columns per task when the axis is not the last
};

// Axis is the last dimension: one task per group of rows.
template <typename T>
void NormRowsTask(void* data, size_t task) {
  auto& job = *static_cast<NormJob<T>*>(data);
  const int64_t n = job.split.n;
  const int64_t rows_per_task = RowsPerTask(n);
  const int64_t first = static_cast<int64_t>(task) * rows_per_task;
  const int64_t last = std::min(job.split.outer, first + rows_per_task);
  std::vector<float> buffer;
  for (int64_t r = first; r < last; ++r) {
    const T* w = job.w + r * n;
    T* y = job.y + r * n;
    if constexpr (std::is_same_v<T, float>) {
      ScaleRow(w, y, n, RowSum(w, n), job.steps);
    } else {
      buffer.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) buffer[i] = ToFloat(w[i]);
      const float v_th = RowSum(buffer.data(), n);
      ScaleRow(buffer.data(), buffer.data(), n, v_th, job.steps);
      for (int64_t i = 0; i < n; ++i) y[i] = FromFloat<T>(buffer[i]);
    }
  }
}

// Axis in the middle: sums run down the axis for a block of contiguous inner columns.
template <typename T>
void NormColumnsTask(void* data, size_t task) {
  auto& job = *static_cast<NormJob<T>*>(data);
  const auto& s = job.split;
  const int64_t blocks_per_outer = (s.inner + job.inner_block - 1) / job.inner_block;
  const int64_t o = static_cast<int64_t>(task) / blocks_per_outer;
  const int64_t c0 = (static_cast<int64_t>(task) % blocks_per_outer) * job.inner_block;
  const int64_t width = std::min(job.inner_block, s.inner - c0);
  std::vector<float> sums(static_cast<size_t>(width), 0.f);
  const T* w = job.w + o * s.n * s.inner + c0;
  T* y = job.y + o * s.n * s.inner + c0;
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t c = 0; c < width; ++c) sums[c] += ToFloat(w[i * s.inner + c]);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t c = 0; c < width; ++c)
      y[i * s.inner + c] = FromFloat<T>(NormValue(ToFloat(w[i * s.inner + c]), sums[c], job.steps));
}

struct SoftmaxSettings {
  const ExpParams* params;
  float steps;
  bool shift, sigmoid;
};

// Spiking-Softmax of one contiguous row, in place: the reference's order of operations.
void SoftmaxRow(float* row, int64_t n, const SoftmaxSettings& s) {
  if (s.sigmoid)
    for (int64_t i = 0; i < n; ++i) row[i] = 1.f / (1.f + std::exp(-row[i]));
  if (s.shift) {
    const float peak = RowMax(row, n);
    for (int64_t i = 0; i < n; ++i) row[i] = row[i] - peak;
  }
  SiExpFloats(row, row, n, *s.params);
  ScaleRow(row, row, n, RowSum(row, n), s.steps);
}

template <typename T>
struct SoftmaxJob {
  const T* x;
  T* y;
  AxisSplit split;
  SoftmaxSettings settings;
  int64_t inner_block;
};

template <typename T>
void SoftmaxRowsTask(void* data, size_t task) {
  auto& job = *static_cast<SoftmaxJob<T>*>(data);
  const int64_t n = job.split.n;
  const int64_t rows_per_task = RowsPerTask(n);
  const int64_t first = static_cast<int64_t>(task) * rows_per_task;
  const int64_t last = std::min(job.split.outer, first + rows_per_task);
  std::vector<float> buffer(static_cast<size_t>(n));
  for (int64_t r = first; r < last; ++r) {
    if constexpr (std::is_same_v<T, float>) {
      std::memcpy(job.y + r * n, job.x + r * n, static_cast<size_t>(n) * sizeof(float));
      SoftmaxRow(job.y + r * n, n, job.settings);
    } else {
      for (int64_t i = 0; i < n; ++i) buffer[i] = ToFloat(job.x[r * n + i]);
      SoftmaxRow(buffer.data(), n, job.settings);
      for (int64_t i = 0; i < n; ++i) job.y[r * n + i] = FromFloat<T>(buffer[i]);
    }
  }
}

// Axis in the middle: gather an (n x width) block of columns, run every column, scatter back.
template <typename T>
void SoftmaxColumnsTask(void* data, size_t task) {
  auto& job = *static_cast<SoftmaxJob<T>*>(data);
  const auto& s = job.split;
  const int64_t blocks_per_outer = (s.inner + job.inner_block - 1) / job.inner_block;
  const int64_t o = static_cast<int64_t>(task) / blocks_per_outer;
  const int64_t c0 = (static_cast<int64_t>(task) % blocks_per_outer) * job.inner_block;
  const int64_t width = std::min(job.inner_block, s.inner - c0);
  const T* x = job.x + o * s.n * s.inner + c0;
  T* y = job.y + o * s.n * s.inner + c0;
  std::vector<float> column(static_cast<size_t>(s.n));
  for (int64_t c = 0; c < width; ++c) {
    for (int64_t i = 0; i < s.n; ++i) column[i] = ToFloat(x[i * s.inner + c]);
    SoftmaxRow(column.data(), s.n, job.settings);
    for (int64_t i = 0; i < s.n; ++i) y[i * s.inner + c] = FromFloat<T>(column[i]);
  }
}

// One pool task per group of rows when the axis is last, else per block of inner columns.
template <typename Job>
void RunAlongAxis(Ort::KernelContext& ctx, Job& job, void (*rows)(void*, size_t), void (*columns)(void*, size_t)) {
  const AxisSplit& s = job.split;
  const bool last_axis = s.inner == 1;
  const int64_t per_task = RowsPerTask(s.n);
  const size_t tasks = last_axis ? static_cast<size_t>((s.outer + per_task - 1) / per_task)
                                 : static_cast<size_t>(s.outer * ((s.inner + job.inner_block - 1) / job.inner_block));
  auto* fn = last_axis ? rows : columns;
  if (tasks == 1) fn(&job, 0);
  else ctx.ParallelFor(fn, tasks, 0, &job);
}

}  // namespace

template <typename T>
OrtStatusPtr SpikingExpCpu<T>::ComputeV2(OrtKernelContext* context) {
  return Guarded(kName, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto io = OpenSameShape(ctx);
    if (io.count == 0) return nullptr;
    ExpJob<T> job{io.input.GetTensorData<T>(), io.output.GetTensorMutableData<T>(), io.count, &params};
    const size_t tasks = static_cast<size_t>((io.count + kExpBlock - 1) / kExpBlock);
    if (tasks == 1) ExpTask<T>(&job, 0);
    else ctx.ParallelFor(&ExpTask<T>, tasks, 0, &job);
    return nullptr;
  });
}

template <typename T>
OrtStatusPtr SpikingNormCpu<T>::ComputeV2(OrtKernelContext* context) {
  return Guarded(kName, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto io = OpenSameShape(ctx);
    AxisSplit split;
    if (OrtStatusPtr error = SplitOrError(kName, io.shape, attrs.axis, &split)) return error;
    if (io.count == 0) return nullptr;
    NormJob<T> job{io.input.GetTensorData<T>(), io.output.GetTensorMutableData<T>(), split,
                   static_cast<float>(attrs.time_steps), 256};
    RunAlongAxis(ctx, job, &NormRowsTask<T>, &NormColumnsTask<T>);
    return nullptr;
  });
}

template <typename T>
OrtStatusPtr SpikingSoftmaxCpu<T>::ComputeV2(OrtKernelContext* context) {
  return Guarded(kName, [&]() -> OrtStatusPtr {
    Ort::KernelContext ctx(context);
    auto io = OpenSameShape(ctx);
    AxisSplit split;
    if (OrtStatusPtr error = SplitOrError(kName, io.shape, norm.attrs.axis, &split)) return error;
    if (io.count == 0) return nullptr;
    SoftmaxJob<T> job{io.input.GetTensorData<T>(), io.output.GetTensorMutableData<T>(), split,
                      {&exp.params, static_cast<float>(norm.attrs.time_steps), shift, sigmoid}, 64};
    RunAlongAxis(ctx, job, &SoftmaxRowsTask<T>, &SoftmaxColumnsTask<T>);
    return nullptr;
  });
}

template struct SpikingExpCpu<float>;
template struct SpikingExpCpu<Ort::Float16_t>;
template struct SpikingNormCpu<float>;
template struct SpikingNormCpu<Ort::Float16_t>;
template struct SpikingSoftmaxCpu<float>;
template struct SpikingSoftmaxCpu<Ort::Float16_t>;

}  // namespace sit
