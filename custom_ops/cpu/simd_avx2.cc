// Row loops for CPUs with AVX2 and FMA: compares give all-ones lanes, so a step masks the
// reset and weight with AND before subtracting and adding. Compiled with -mavx2 -mfma -mf16c,
// run only where SelectRowOps found all three.
#include <immintrin.h>

#include "row_kernels.h"

namespace sit {
namespace {

struct Avx2 {
  using V = __m256;
  using M = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kVectors = 6;  // 6 x 8 floats in flight; 15 of the 16 registers
  // Groups of up to 10 vectors although 6 fill the registers: the spilled accumulators cost less
  // than the wait on a step's latency (Zen 5: 2.07 cycles a float instead of 2.42).
  static constexpr int kGroupMax = 10, kFmaFrom = 11;  // the step is already on the FMA units
  static constexpr bool kRowsShareGroups = false;  // measured 3-6% slower: the groups spill

  static __m256i Lanes(int64_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V Set(float f) { return _mm256_set1_ps(f); }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static V LoadPart(const float* p, int64_t count, float fill) {
    const __m256i lanes = Lanes(count);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, lanes), _mm256_castsi256_ps(lanes));
  }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void StorePart(float* p, V v, int64_t count) { _mm256_maskstore_ps(p, Lanes(count), v); }
  // A step's spike as 1.0 or 0.0 (what SubWhere and AddWhere take): one AND after the compare,
  // then one FMA each, 4 instructions a step where masking h and d separately took 5.
  static M AtLeast(V a, V b) { return _mm256_and_ps(_mm256_cmp_ps(a, b, _CMP_GE_OQ), _mm256_set1_ps(1.f)); }
  static M Greater(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static V Where(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  // a - b*z and a + b*z for z in {0, 1}: one rounding, so exactly a - b, a + b or a (also for -0)
  static V SubWhere(V a, M z, V b) { return _mm256_fnmadd_ps(b, z, a); }
  static V AddWhere(V a, M z, V b) { return _mm256_fmadd_ps(b, z, a); }
  static V AddWhereFma(V a, M z, V b) { return AddWhere(a, z, b); }
  static V KeepNaN(V out, V in) { return _mm256_blendv_ps(out, in, _mm256_cmp_ps(in, in, _CMP_UNORD_Q)); }
  static V Blend(V a, V b, int64_t count) { return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(Lanes(count))); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V Div(V a, V b) { return _mm256_div_ps(a, b); }
  static V Max(V a, V b) { return _mm256_max_ps(a, b); }  // b where either is NaN
  static V Min(V a, V b) { return _mm256_min_ps(a, b); }  // b where either is NaN
  static V Round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // a * 2^k for integral k in [-127, 128], as two factors so that neither leaves the normal range.
  static V ScaleByPow2(V a, V k) {
    const __m256i whole = _mm256_cvtps_epi32(k), half = _mm256_srai_epi32(whole, 1);
    const __m256i bias = _mm256_set1_epi32(127);
    const V first = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    const V second = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(whole, half), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(a, first), second);
  }
  static V Floor(V a) { return _mm256_floor_ps(a); }
  static float SumLanes(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static float MaxLanes(V a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
  }
};

// float16 conversions (F16C), 8 at a time; a tail goes through a full-width copy.
constexpr int kNearestEven = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

void HalfToFloat(const uint16_t* h, float* f, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  if (i == n) return;
  uint16_t tail[8] = {0};
  for (int64_t j = i; j < n; ++j) tail[j - i] = h[j];
  Avx2::StorePart(f + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tail))), n - i);
}

void FloatToHalf(const float* f, uint16_t* h, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(f + i), kNearestEven));
  if (i == n) return;
  uint16_t tail[8];
  const __m128i halves = _mm256_cvtps_ph(Avx2::LoadPart(f + i, n - i, 0.f), kNearestEven);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(tail), halves);
  for (int64_t j = i; j < n; ++j) h[j] = tail[j - i];
}

}  // namespace

extern const RowOps kRowOpsAvx2 = RowKernels<Avx2>::Table("avx2", &HalfToFloat, &FloatToHalf);

}  // namespace sit
