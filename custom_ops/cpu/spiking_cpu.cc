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
constexpr int kTailLanes = 32;        // the tail of a row (16 measured slower: spills)

// Rows of length n handed to one thread-pool task: about 16k elements each.
inline int64_t RowsPerTask(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)); }

// When the axis is not the last: tasks take `block` contiguous inner columns of one outer index.
inline int64_t ColumnBlocksPerOuter(const AxisSplit& s, int64_t block) { return (s.inner + block - 1) / block; }

struct ColumnBlock {
  int64_t offset;  // of the block's first element
  int64_t width;   // columns in the block
};

inline ColumnBlock ColumnBlockOf(const AxisSplit& s, int64_t block, size_t task) {
  const int64_t per_outer = ColumnBlocksPerOuter(s, block);
  const int64_t outer = static_cast<int64_t>(task) / per_outer;
  const int64_t first = (static_cast<int64_t>(task) % per_outer) * block;
  return {outer * s.n * s.inner + first, std::min(block, s.inner - first)};
}

inline float ToFloat(float v) { return v; }
inline float ToFloat(Ort::Float16_t v) { return v.ToFloat(); }
template <typename T>
inline T FromFloat(float v);
template <>
inline float FromFloat<float>(float v) { return v; }
template <>
inline Ort::Float16_t FromFloat<Ort::Float16_t>(float v) { return Ort::Float16_t(v); }

// Helpers are inlined into the multiversioned entry points below, so each CPU clone
// (AVX-512, AVX2, baseline) gets them compiled for its own instruction set.
#define SIT_INLINE inline __attribute__((always_inline))

// SI-exp of (x - offset) over Lanes floats: v=x-offset; z=(v>=T[t]); v-=h[t]*z; out+=d[t]*z.
// The numpy reference's float operations in its order; NaN in gives NaN out. In place is fine.
template <int Lanes>
SIT_INLINE void SiExpBlock(const float* x, float* y, const ExpParams& p, float offset) {
  float v[Lanes], acc[Lanes];
  for (int j = 0; j < Lanes; ++j) {
    v[j] = x[j] - offset;
    acc[j] = 0.f;
  }
  for (int t = 0; t < p.steps; ++t) {
    const float th = p.thresholds[t], h = p.resets[t], d = p.weights[t];
    for (int j = 0; j < Lanes; ++j) {  // z in {0, 1}: arithmetic, not a select, so it stays branch-free
      const float z = static_cast<float>(v[j] >= th);
      v[j] = v[j] - h * z;
      acc[j] = acc[j] + d * z;
    }
  }
  for (int j = 0; j < Lanes; ++j) {
    const float in = x[j] - offset;
    y[j] = in != in ? in : acc[j];
  }
}

// Wide blocks for throughput, then narrow ones so a row's tail (197 = 128 + 69) wastes little;
// the last partial block runs on a zero-padded copy.
SIT_INLINE void SiExpCore(const float* x, float* y, int64_t n, const ExpParams& p, float offset) {
  int64_t start = 0;
  for (; start + kLanes <= n; start += kLanes) SiExpBlock<kLanes>(x + start, y + start, p, offset);
  for (; start + kTailLanes <= n; start += kTailLanes) SiExpBlock<kTailLanes>(x + start, y + start, p, offset);
  if (start < n) {
    float pad[kTailLanes] = {0};
    std::memcpy(pad, x + start, static_cast<size_t>(n - start) * sizeof(float));
    SiExpBlock<kTailLanes>(pad, pad, p, offset);
    std::memcpy(y + start, pad, static_cast<size_t>(n - start) * sizeof(float));
  }
}

// SI-norm's output for one element given its row's threshold V_th.
SIT_INLINE float NormValue(float w, float v_th, float steps) {
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
SIT_INLINE float RowSum(const float* w, int64_t n) {
  float partial[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) partial[j] += w[i + j];
  float total = 0.f;
  for (; i < n; ++i) total += w[i];
  for (int j = 0; j < 16; ++j) total += partial[j];
  return total;
}

// Max of a contiguous row. A NaN may be skipped here: it still turns its SI-exp output, hence
// V_th and the whole row, into NaN, exactly as numpy's NaN max does.
SIT_INLINE float RowMax(const float* x, int64_t n) {
  float partial[16];
  for (int j = 0; j < 16; ++j) partial[j] = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) partial[j] = std::max(partial[j], x[i + j]);
  float best = -INFINITY;
  for (; i < n; ++i) best = std::max(best, x[i]);
  for (int j = 0; j < 16; ++j) best = std::max(best, partial[j]);
  return best;
}

SIT_INLINE void ScaleRow(const float* w, float* y, int64_t n, float v_th, float steps) {
  if (v_th > 0.f && steps == 0.f) {
    for (int64_t i = 0; i < n; ++i) y[i] = w[i] / v_th;
    return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] = NormValue(w[i], v_th, steps);
}

struct SoftmaxSettings {
  const ExpParams* params;
  float steps;
  bool shift, sigmoid;
};

SIT_MULTIVERSION void SiExpFloats(const float* x, float* y, int64_t n, const ExpParams& p) {
  SiExpCore(x, y, n, p, 0.f);
}

SIT_MULTIVERSION void NormRowsFloat(const float* w, float* y, int64_t rows, int64_t n, float steps) {
  for (int64_t r = 0; r < rows; ++r) ScaleRow(w + r * n, y + r * n, n, RowSum(w + r * n, n), steps);
}

// Spiking-Softmax of contiguous rows: max, SI-exp of the shifted row, sum, scale.
SIT_MULTIVERSION void SoftmaxRowsFloat(const float* x, float* y, int64_t rows, int64_t n, const SoftmaxSettings& s) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * n;
    float* out = y + r * n;
    if (s.sigmoid) {
      for (int64_t i = 0; i < n; ++i) out[i] = 1.f / (1.f + std::exp(-in[i]));
      in = out;
    }
    SiExpCore(in, out, n, *s.params, s.shift ? RowMax(in, n) : 0.f);
    ScaleRow(out, out, n, RowSum(out, n), s.steps);
  }
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

// The rows [first, last) of length n through `rows_fn(in, out, count)` on floats: float data directly,
// other types one row at a time through a float buffer.
template <typename T, typename RowsFn>
void ForRows(const T* x, T* y, int64_t first, int64_t last, int64_t n, RowsFn&& rows_fn) {
  if constexpr (std::is_same_v<T, float>) {
    rows_fn(x + first * n, y + first * n, last - first);
  } else {
    std::vector<float> buffer(static_cast<size_t>(n));
    for (int64_t r = first; r < last; ++r) {
      for (int64_t i = 0; i < n; ++i) buffer[i] = ToFloat(x[r * n + i]);
      rows_fn(buffer.data(), buffer.data(), 1);
      for (int64_t i = 0; i < n; ++i) y[r * n + i] = FromFloat<T>(buffer[i]);
    }
  }
}

// Axis is the last dimension: one task per group of rows.
template <typename T>
void NormRowsTask(void* data, size_t task) {
  auto& job = *static_cast<NormJob<T>*>(data);
  const int64_t n = job.split.n;
  const int64_t first = static_cast<int64_t>(task) * RowsPerTask(n);
  ForRows(job.w, job.y, first, std::min(job.split.outer, first + RowsPerTask(n)), n,
          [&](const float* in, float* out, int64_t rows) { NormRowsFloat(in, out, rows, n, job.steps); });
}

// Axis in the middle: sums run down the axis for a block of contiguous inner columns.
template <typename T>
void NormColumnsTask(void* data, size_t task) {
  auto& job = *static_cast<NormJob<T>*>(data);
  const auto& s = job.split;
  const ColumnBlock block = ColumnBlockOf(s, job.inner_block, task);
  const int64_t width = block.width;
  std::vector<float> sums(static_cast<size_t>(width), 0.f);
  const T* w = job.w + block.offset;
  T* y = job.y + block.offset;
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t c = 0; c < width; ++c) sums[c] += ToFloat(w[i * s.inner + c]);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t c = 0; c < width; ++c)
      y[i * s.inner + c] = FromFloat<T>(NormValue(ToFloat(w[i * s.inner + c]), sums[c], job.steps));
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
  const int64_t first = static_cast<int64_t>(task) * RowsPerTask(n);
  ForRows(job.x, job.y, first, std::min(job.split.outer, first + RowsPerTask(n)), n,
          [&](const float* in, float* out, int64_t rows) { SoftmaxRowsFloat(in, out, rows, n, job.settings); });
}

// Axis in the middle: gather an (n x width) block of columns, run every column, scatter back.
template <typename T>
void SoftmaxColumnsTask(void* data, size_t task) {
  auto& job = *static_cast<SoftmaxJob<T>*>(data);
  const auto& s = job.split;
  const ColumnBlock block = ColumnBlockOf(s, job.inner_block, task);
  const int64_t width = block.width;
  const T* x = job.x + block.offset;
  T* y = job.y + block.offset;
  std::vector<float> column(static_cast<size_t>(s.n));
  for (int64_t c = 0; c < width; ++c) {
    for (int64_t i = 0; i < s.n; ++i) column[i] = ToFloat(x[i * s.inner + c]);
    SoftmaxRowsFloat(column.data(), column.data(), 1, s.n, job.settings);
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
                                 : static_cast<size_t>(s.outer * ColumnBlocksPerOuter(s, job.inner_block));
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
