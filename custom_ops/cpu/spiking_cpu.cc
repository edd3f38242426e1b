#include "spiking_cpu.h"

#include <algorithm>
#include <exception>
#include <mutex>
#include <type_traits>
#include <vector>

namespace sit {
namespace {

constexpr int64_t kTaskElements = 16384;  // per thread-pool task: fits in L2 with room to spare

inline float ToFloat(float v) { return v; }
inline float ToFloat(Ort::Float16_t v) { return v.ToFloat(); }
template <typename T>
inline T FromFloat(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else return T(v);
}

// Contiguous float16 <-> float through the CPU's conversion instructions where the row ops have them.
void ToFloats(const RowOps& ops, const Ort::Float16_t* in, float* out, int64_t n) {
  static_assert(sizeof(Ort::Float16_t) == sizeof(uint16_t), "float16 is stored as its 16 bits");
  if (ops.half_to_float) return ops.half_to_float(reinterpret_cast<const uint16_t*>(in), out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = in[i].ToFloat();
}

void FromFloats(const RowOps& ops, const float* in, Ort::Float16_t* out, int64_t n) {
  if (ops.float_to_half) return ops.float_to_half(in, reinterpret_cast<uint16_t*>(out), n);
  for (int64_t i = 0; i < n; ++i) out[i] = Ort::Float16_t(in[i]);
}

// Runs `fn(task)` for tasks [0, count) on onnxruntime's intra-op pool (inline when there is one).
// An exception must not leave a pool thread (that would end the process): the first one is kept
// and thrown again here, where Guarded turns it into the kernel's error status.
template <typename Fn>
void ForTasks(Ort::KernelContext& ctx, size_t count, Fn& fn) {
  if (count == 1) return fn(0);
  struct Run {
    Fn& fn;
    std::mutex mutex;
    std::exception_ptr error;
  } run{fn, {}, nullptr};
  auto task = [](void* data, size_t index) {
    auto& r = *static_cast<Run*>(data);
    try {
      r.fn(index);
    } catch (...) {
      std::lock_guard<std::mutex> lock(r.mutex);
      if (!r.error) r.error = std::current_exception();
    }
  };
  ctx.ParallelFor(task, count, 0, &run);
  if (run.error) std::rethrow_exception(run.error);
}

// Elementwise over the flat tensor: float data as it lies, float16 through float copies (fn may read
// its input after writing its output: the two never share memory).
template <typename T, typename FloatFn>
void ForBlocks(Ort::KernelContext& ctx, const RowOps& ops, const T* x, T* y, int64_t count, FloatFn&& fn) {
  auto task = [&](size_t index) {
    const int64_t begin = static_cast<int64_t>(index) * kTaskElements;
    const int64_t size = std::min(kTaskElements, count - begin);
    if constexpr (std::is_same_v<T, float>) {
      fn(x + begin, y + begin, size);
    } else {
      std::vector<float> buffer(static_cast<size_t>(2 * size));
      ToFloats(ops, x + begin, buffer.data(), size);
      fn(buffer.data(), buffer.data() + size, size);
      FromFloats(ops, buffer.data() + size, y + begin, size);
    }
  };
  ForTasks(ctx, static_cast<size_t>((count + kTaskElements - 1) / kTaskElements), task);
}

// Along an axis: `rows_fn(in, out, rows)` sees `rows` contiguous float rows of length n. With the
// axis last, float tensors are passed as they lie, a task's rows at a time; otherwise a task
// gathers a block of columns (or converts float16) into a float buffer and scatters the result.
template <typename T, typename RowsFn>
void ForRows(Ort::KernelContext& ctx, const RowOps& ops, const T* x, T* y, const AxisSplit& s, RowsFn&& rows_fn) {
  const int64_t n = s.n;
  const int64_t width = std::max<int64_t>(1, std::min(s.inner, kTaskElements / std::max<int64_t>(n, 1)));
  const int64_t blocks_per_outer = (s.inner + width - 1) / width;
  // Axis last: a task is a group of whole rows. Otherwise a task is `width` columns of one outer index.
  const int64_t rows_per_task = std::max<int64_t>(1, kTaskElements / std::max<int64_t>(n, 1));
  const int64_t tasks = s.inner == 1 ? (s.outer + rows_per_task - 1) / rows_per_task : s.outer * blocks_per_outer;
  auto task = [&](size_t index) {
    const int64_t t = static_cast<int64_t>(index);
    if (s.inner == 1) {
      const int64_t first = t * rows_per_task, rows = std::min(rows_per_task, s.outer - first);
      if constexpr (std::is_same_v<T, float>) return rows_fn(x + first * n, y + first * n, rows);
      else {
        std::vector<float> buffer(static_cast<size_t>(rows * n));
        ToFloats(ops, x + first * n, buffer.data(), rows * n);
        rows_fn(buffer.data(), buffer.data(), rows);
        return FromFloats(ops, buffer.data(), y + first * n, rows * n);
      }
    }
    const int64_t outer = t / blocks_per_outer, first = (t % blocks_per_outer) * width;
    const int64_t columns = std::min(width, s.inner - first);
    const int64_t offset = outer * n * s.inner + first;
    std::vector<float> buffer(static_cast<size_t>(columns * n));  // column c at buffer[c*n ...]
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < columns; ++c) buffer[c * n + i] = ToFloat(x[offset + i * s.inner + c]);
    rows_fn(buffer.data(), buffer.data(), columns);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < columns; ++c) y[offset + i * s.inner + c] = FromFloat<T>(buffer[c * n + i]);
  };
  ForTasks(ctx, static_cast<size_t>(tasks), task);
}

// SI-norm of contiguous rows: each row's sum is its threshold.
void NormRows(const RowOps& ops, const float* w, float* y, int64_t rows, int64_t n, int64_t steps) {
  for (int64_t r = 0; r < rows; ++r) ops.scale(w + r * n, y + r * n, n, ops.sum(w + r * n, n), steps);
}

struct SoftmaxSettings {
  const RowOps* ops;
  const ExpParams* params;
  int64_t steps;
  bool shift, sigmoid;
};

// Rows of a few hundred floats and more, each in three passes: max, SI-exp summing as it stores,
// scale. Rows of whole vectors go kSharedRows at a time, so that SI-exp steps them together (a
// 128-float row alone would wait on the latency of each step); other rows one by one, in L1.
void LongRows(const SoftmaxSettings& s, const float* in, float* y, int64_t rows, int64_t n) {
  const RowOps& ops = *s.ops;
  if (!(ops.shared_row_width > 0 && n % ops.shared_row_width == 0)) {
    for (int64_t r = 0; r < rows; ++r) {
      const float offset = s.shift ? ops.max(in + r * n, n) : 0.f;
      ops.scale(y + r * n, y + r * n, n, ops.si_exp(in + r * n, y + r * n, n, *s.params, offset), s.steps);
    }
    return;
  }
  float offsets[kSharedRows], sums[kSharedRows];
  for (int64_t first = 0; first < rows; first += kSharedRows) {
    const int64_t count = std::min(kSharedRows, rows - first);
    for (int64_t r = 0; r < count; ++r) offsets[r] = s.shift ? ops.max(in + (first + r) * n, n) : 0.f;
    ops.si_exp_rows(in + first * n, y + first * n, count, n, *s.params, offsets, sums);
    for (int64_t r = 0; r < count; ++r) ops.scale(y + (first + r) * n, y + (first + r) * n, n, sums[r], s.steps);
  }
}

// Spiking-Softmax of contiguous rows in the reference's order: [sigmoid], [minus the row max],
// SI-exp, SI-norm. Rows shorter than the lanes in flight are shifted first and go through SI-exp
// as one stream, so it still fills the vector units.
void SoftmaxRows(const SoftmaxSettings& s, const float* x, float* y, int64_t rows, int64_t n) {
  const RowOps& ops = *s.ops;
  const float* in = x;
  if (s.sigmoid) {
    ops.sigmoid(x, y, rows * n);
    in = y;
  }
  if (2 * n >= ops.lanes_in_flight) return LongRows(s, in, y, rows, n);
  if (s.shift) {
    for (int64_t r = 0; r < rows; ++r) ops.shift(in + r * n, y + r * n, n, ops.max(in + r * n, n));
    in = y;
  }
  ops.si_exp(in, y, rows * n, *s.params, 0.f);
  NormRows(ops, y, y, rows, n, s.steps);
}

}  // namespace

template <typename T>
OrtStatusPtr SpikingExpCpu<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeSameShape(kName, context, [&](Ort::KernelContext& ctx, SameShapeIO& io) -> OrtStatusPtr {
    ForBlocks(ctx, *ops, io.input.GetTensorData<T>(), io.output.GetTensorMutableData<T>(), io.count,
              [&](const float* x, float* y, int64_t size) { ops->si_exp(x, y, size, params, 0.f); });
    return nullptr;
  });
}

template <typename T>
OrtStatusPtr SpikingActivationCpu<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeSameShape(kName, context, [&](Ort::KernelContext& ctx, SameShapeIO& io) -> OrtStatusPtr {
    ForBlocks(ctx, *ops, io.input.GetTensorData<T>(), io.output.GetTensorMutableData<T>(), io.count,
              [&](const float* x, float* y, int64_t size) {
                ops->si_exp(x, y, size, exp.params, 0.f);
                ops->activation(x, y, size, act);
              });
    return nullptr;
  });
}

template <typename T>
OrtStatusPtr SpikingNormCpu<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeAlongAxis(kName, context, attrs.axis, [&](Ort::KernelContext& ctx, SameShapeIO& io,
                                                          const AxisSplit& split) -> OrtStatusPtr {
    ForRows(ctx, *ops, io.input.GetTensorData<T>(), io.output.GetTensorMutableData<T>(), split,
            [&](const float* w, float* y, int64_t rows) { NormRows(*ops, w, y, rows, split.n, attrs.time_steps); });
    return nullptr;
  });
}

template <typename T>
OrtStatusPtr SpikingSoftmaxCpu<T>::ComputeV2(OrtKernelContext* context) {
  return ComputeAlongAxis(kName, context, norm.attrs.axis, [&](Ort::KernelContext& ctx, SameShapeIO& io,
                                                               const AxisSplit& split) -> OrtStatusPtr {
    const SoftmaxSettings settings{ops, &exp.params, norm.attrs.time_steps, shift, sigmoid};
    ForRows(ctx, *ops, io.input.GetTensorData<T>(), io.output.GetTensorMutableData<T>(), split,
            [&](const float* x, float* y, int64_t rows) { SoftmaxRows(settings, x, y, rows, split.n); });
    return nullptr;
  });
}

template struct SpikingExpCpu<float>;
template struct SpikingExpCpu<Ort::Float16_t>;
template struct SpikingActivationCpu<float>;
template struct SpikingActivationCpu<Ort::Float16_t>;
template struct SpikingNormCpu<float>;
template struct SpikingNormCpu<Ort::Float16_t>;
template struct SpikingSoftmaxCpu<float>;
template struct SpikingSoftmaxCpu<Ort::Float16_t>;

}  // namespace sit
