// The row loops of row_ops.h written once over a SIMD traits type S, included by one
// translation unit per instruction set (simd_avx512.cc, simd_avx2.cc, simd_portable.cc).
//
// S provides: V (vector), M (lane mask), kWidth (lanes), kVectors (vectors stepped together
// to hide the compare -> subtract latency of one step), kGroupMax (the most vectors a group may
// step together: what the registers hold), kFmaFrom (groups this large add the weights on the FMA
// units through AddWhereFma, which leaves the add units to the compare and the subtract),
// kRowsShareGroups (whether the set offers SiExpRows, short rows sharing groups: where it measured
// faster), and
//   Set(f), Load(p), LoadPart(p, count, fill), Store(p, v), StorePart(p, v, count),
//   AtLeast(a, b) (a step's spike, in whatever form SubWhere(a, z, b) and AddWhere(a, z, b) take:
//   a lane mask, or 1.0/0.0 for AVX2's FMA step), AddWhereFma(a, z, b) (AddWhere's result, on the
//   FMA units), Greater(a, b) -> M, Where(m, a, b) (a where m, else b), KeepNaN(out, in),
//   Blend(a, b, count) (b in the first count lanes), Add, Sub, Mul, Div, Max, Min, Floor, Round (to
//   nearest even), ScaleByPow2(a, k) (a * 2^k, k integral), SumLanes, MaxLanes.
// Everything here is static or in an anonymous namespace: each instruction set keeps its own
// copy, so the linker never swaps an AVX-512 body into the portable path.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "row_ops.h"

namespace sit {
namespace {

template <class S>
struct RowKernels {
  using V = typename S::V;
  static constexpr int W = S::kWidth;

  // All K steps on R vectors at once (acc starts at 0): the reference's v - h*z and out + d*z for
  // z in {0, 1} and finite h, d, as masked operations, bit-identical, three instructions per
  // vector and step.
  template <int R>
  static inline __attribute__((always_inline)) void Steps(V (&v)[R], V (&acc)[R], const ExpParams& p) {
    for (int t = 0; t < p.steps; ++t) {
      const V threshold = S::Set(p.thresholds[t]), reset = S::Set(p.resets[t]), weight = S::Set(p.weights[t]);
      _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
        const auto fire = S::AtLeast(v[r], threshold);
        v[r] = S::SubWhere(v[r], fire, reset);
        if constexpr (R >= S::kFmaFrom) acc[r] = S::AddWhereFma(acc[r], fire, weight);
        else acc[r] = S::AddWhere(acc[r], fire, weight);
      }
    }
  }

  // R vectors through all K steps; `count` <= R*W valid floats, only the last vector partial
  // unless kFull. Returns `total` plus the outputs, added in order.
  template <int R, bool kFull>
  static inline __attribute__((always_inline)) V StepVectors(const float* x, float* y, int64_t count,
                                                             const ExpParams& p, V offset, V total) {
    V v[R], acc[R];
    _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
      const int64_t left = count - r * W;
      v[r] = S::Sub(kFull || left >= W ? S::Load(x + r * W) : S::LoadPart(x + r * W, left, 0.f), offset);
      acc[r] = S::Set(0.f);
    }
    Steps<R>(v, acc, p);
    // A NaN never fires, so it is still in v at the end: the reference's NaN-in, NaN-out.
    _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
      const int64_t left = count - r * W;
      acc[r] = S::KeepNaN(acc[r], v[r]);
      if (kFull || left >= W) {
        S::Store(y + r * W, acc[r]);
      } else {  // lanes past the end hold SI-exp(0 - offset): zero them before they reach the total
        S::StorePart(y + r * W, acc[r], left);
        acc[r] = S::Blend(S::Set(0.f), acc[r], left);
      }
      total = S::Add(total, acc[r]);
    }
    return total;
  }

  template <int R>
  static V ExpVectors(const float* x, float* y, int64_t count, const ExpParams& p, V offset, V total) {
    if (count == R * W) return StepVectors<R, true>(x, y, count, p, offset, total);
    return StepVectors<R, false>(x, y, count, p, offset, total);
  }

  using GroupFn = V (*)(const float*, float*, int64_t, const ExpParams&, V, V);
  template <int... R>
  static constexpr std::array<GroupFn, sizeof...(R)> Groups(std::integer_sequence<int, R...>) {
    return {&ExpVectors<R + 1>...};
  }
  static constexpr auto kGroups = Groups(std::make_integer_sequence<int, S::kGroupMax>{});

  // The row in groups of equal size (at most kGroupMax vectors each): a short last group would
  // wait on the latency of each step, a 197-float row is one group of 13 rather than 8 + 5.
  static float SiExp(const float* x, float* y, int64_t n, const ExpParams& p, float offset) {
    const V off = S::Set(offset);
    V total = S::Set(0.f);
    const int64_t vectors = (n + W - 1) / W;
    int64_t i = 0, done = 0;
    for (int64_t groups = (vectors + S::kGroupMax - 1) / S::kGroupMax; groups > 0; --groups) {
      const int64_t size = (vectors - done + groups - 1) / groups, count = std::min(size * W, n - i);
      total = kGroups[size - 1](x + i, y + i, count, p, off, total);
      i += count;
      done += size;
    }
    return S::SumLanes(total);
  }

  // Whole vectors of rows lying end to end (n a multiple of W, `vectors_per_row` each), from
  // vector `first` on: each vector is shifted by its row's offset, and its outputs are added to
  // its row's total in the order SiExp adds them, so the totals are SiExp's to the bit.
  template <int R>
  static void RowVectors(const float* x, float* y, int64_t first, int64_t vectors_per_row, const ExpParams& p,
                         const float* offsets, V* totals) {
    V v[R], acc[R];
    int64_t row = first / vectors_per_row, at = first % vectors_per_row;
    _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
      v[r] = S::Sub(S::Load(x + r * W), S::Set(offsets[row]));
      acc[r] = S::Set(0.f);
      if (++at == vectors_per_row) at = 0, ++row;
    }
    Steps<R>(v, acc, p);
    row = first / vectors_per_row, at = first % vectors_per_row;
    V total = totals[row];
    _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
      acc[r] = S::KeepNaN(acc[r], v[r]);
      S::Store(y + r * W, acc[r]);
      total = S::Add(total, acc[r]);
      if (++at == vectors_per_row && r + 1 < R) totals[row++] = total, at = 0, total = totals[row];
    }
    totals[row] = total;
  }

  using RowGroupFn = void (*)(const float*, float*, int64_t, int64_t, const ExpParams&, const float*, V*);
  template <int... R>
  static constexpr std::array<RowGroupFn, sizeof...(R)> RowGroups(std::integer_sequence<int, R...>) {
    return {&RowVectors<R + 1>...};
  }
  static constexpr auto kRowGroups = RowGroups(std::make_integer_sequence<int, S::kGroupMax>{});

  // SiExp of 1..kSharedRows rows of n floats end to end (n > 0 a multiple of W), row r shifted by
  // offsets[r], its sum in sums[r]: short rows share groups, so a 128-float row does not wait on the
  // latency of a group of 8 vectors.
  static void SiExpRows(const float* x, float* y, int64_t rows, int64_t n, const ExpParams& p, const float* offsets,
                        float* sums) {
    const int64_t vectors = rows * (n / W);
    V totals[kSharedRows];
    for (int64_t r = 0; r < rows; ++r) totals[r] = S::Set(0.f);
    int64_t done = 0;
    for (int64_t groups = (vectors + S::kGroupMax - 1) / S::kGroupMax; groups > 0; --groups) {
      const int64_t size = (vectors - done + groups - 1) / groups;
      kRowGroups[size - 1](x + done * W, y + done * W, done, n / W, p, offsets, totals);
      done += size;
    }
    for (int64_t r = 0; r < rows; ++r) sums[r] = S::SumLanes(totals[r]);
  }

  static float Max(const float* x, int64_t n) {
    V best[4] = {S::Set(-__builtin_inff()), S::Set(-__builtin_inff()), S::Set(-__builtin_inff()),
                 S::Set(-__builtin_inff())};
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W)
      for (int r = 0; r < 4; ++r) best[r] = S::Max(best[r], S::Load(x + i + r * W));
    for (; i + W <= n; i += W) best[0] = S::Max(best[0], S::Load(x + i));
    if (i < n) best[1] = S::Max(best[1], S::LoadPart(x + i, n - i, -__builtin_inff()));
    return S::MaxLanes(S::Max(S::Max(best[0], best[1]), S::Max(best[2], best[3])));
  }

  static float Sum(const float* x, int64_t n) {
    V total[4] = {S::Set(0.f), S::Set(0.f), S::Set(0.f), S::Set(0.f)};
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W)
      for (int r = 0; r < 4; ++r) total[r] = S::Add(total[r], S::Load(x + i + r * W));
    for (; i + W <= n; i += W) total[0] = S::Add(total[0], S::Load(x + i));
    if (i < n) total[1] = S::Add(total[1], S::LoadPart(x + i, n - i, 0.f));
    return S::SumLanes(S::Add(S::Add(total[0], total[1]), S::Add(total[2], total[3])));
  }

  // y = op(w) over n floats, whole vectors then one partial one.
  template <class Op>
  static inline __attribute__((always_inline)) void Map(const float* w, float* y, int64_t n, Op op) {
    int64_t i = 0;
    for (; i + W <= n; i += W) S::Store(y + i, op(S::Load(w + i)));
    if (i < n) S::StorePart(y + i, op(S::LoadPart(w + i, n - i, 0.f)), n - i);
  }

  static void Scale(const float* w, float* y, int64_t n, float v_th, int64_t steps) {
    if (!(v_th > 0.f)) {  // an empty or all-zero row spikes nowhere; a NaN row stays NaN
      const V fill = S::Set(v_th != v_th ? v_th : 0.f);
      return Map(w, y, n, [&](V) { return fill; });
    }
    if (steps == 0) {  // times the reciprocal, as onnxruntime's Softmax scales: within 1 ulp of w/v_th
      const V inverse = S::Set(1.f / v_th);
      return Map(w, y, n, [&](V a) { return S::Mul(a, inverse); });
    }
    // Spike counts: floor(N*w/V_th) in the reference's order (divide, times N, floor, clip at 0, /N).
    const V threshold = S::Set(v_th), count = S::Set(static_cast<float>(steps)), zero = S::Set(0.f);
    Map(w, y, n, [&](V a) { return S::Div(S::Max(zero, S::Floor(S::Mul(S::Div(a, threshold), count))), count); });
  }

  // e^a to about 1 ulp (Cephes' expf): a = k*ln2 + r with |r| <= ln2/2, e^r by a degree-7
  // polynomial, times 2^k. Overflows to inf above ~88.72 and goes to 0 through the subnormals;
  // NaN stays NaN (the clamps keep it: Max and Min return their second operand for a NaN).
  static inline __attribute__((always_inline)) V Exp(V a) {
    a = S::Min(S::Set(88.8f), S::Max(S::Set(-88.f), a));
    const V k = S::Round(S::Mul(a, S::Set(1.44269504088896341f)));
    V r = S::Sub(a, S::Mul(k, S::Set(0.693359375f)));  // ln2 in two parts, the first exact in float
    r = S::Sub(r, S::Mul(k, S::Set(-2.12194440e-4f)));
    V poly = S::Set(1.9875691500e-4f);
    for (const float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
      poly = S::Add(S::Mul(poly, r), S::Set(c));
    const V e = S::Add(S::Add(S::Mul(poly, S::Mul(r, r)), r), S::Set(1.f));
    return S::ScaleByPow2(e, k);
  }

  // y = 1 / (1 + e^-x), the Sigmoid the paper puts before SI-exp.
  static void Sigmoid(const float* x, float* y, int64_t n) {
    const V one = S::Set(1.f);
    Map(x, y, n, [&](V a) { return S::Div(one, S::Add(one, Exp(S::Sub(S::Set(0.f), a)))); });
  }

  // y + bias (a gate: x * (y + bias)) where low <= x <= high (and for NaN, which SI-exp kept), else
  // slope * x + intercept of that side, multiplied and added in two roundings as the reference does.
  static void Activation(const float* x, float* y, int64_t n, const ActivationAttrs& a) {
    const V low = S::Set(a.low), high = S::Set(a.high), bias = S::Set(a.bias);
    const V s_lo = S::Set(a.tails[0]), c_lo = S::Set(a.tails[1]), s_hi = S::Set(a.tails[2]), c_hi = S::Set(a.tails[3]);
    const bool flat_lo = a.tails[0] == 0.f, flat_hi = a.tails[2] == 0.f, gate = a.gate;
    auto finish = [&](V in, V acc) {
      const V below = flat_lo ? c_lo : S::Add(S::Mul(s_lo, in), c_lo);
      const V above = flat_hi ? c_hi : S::Add(S::Mul(s_hi, in), c_hi);
      const V neuron = S::Add(acc, bias);
      const V out = S::Where(S::Greater(low, in), below, gate ? S::Mul(in, neuron) : neuron);
      return S::Where(S::Greater(in, high), above, out);
    };
    int64_t i = 0;
    for (; i + W <= n; i += W) S::Store(y + i, finish(S::Load(x + i), S::Load(y + i)));
    if (i < n) S::StorePart(y + i, finish(S::LoadPart(x + i, n - i, 0.f), S::LoadPart(y + i, n - i, 0.f)), n - i);
  }

  static void Shift(const float* x, float* y, int64_t n, float offset) {
    const V off = S::Set(offset);
    Map(x, y, n, [&](V a) { return S::Sub(a, off); });
  }

  using HalfToFloat = void (*)(const uint16_t*, float*, int64_t);
  using FloatToHalf = void (*)(const float*, uint16_t*, int64_t);
  static constexpr RowOps Table(const char* isa, HalfToFloat to_float = nullptr, FloatToHalf to_half = nullptr) {
    constexpr bool shared = S::kRowsShareGroups;
    return {isa, S::kVectors * W, shared ? W : 0, &SiExp, shared ? &SiExpRows : nullptr,
            &Max, &Sum, &Scale, &Activation, &Shift, &Sigmoid, to_float, to_half};
  }
};

}  // namespace
}  // namespace sit
