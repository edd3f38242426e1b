// Row loops for CPUs with AVX-512F: compares write mask registers, so one SI-exp step is
// one compare and two masked adds per 16 lanes. Compiled with -mavx512f, run only where
// SelectRowOps found AVX-512F.
#include <immintrin.h>

#include "row_kernels.h"

namespace sit {
namespace {

struct Avx512 {
  using V = __m512;
  using M = __mmask16;
  static constexpr int kWidth = 16;
  static constexpr int kVectors = 8;  // 8 x 16 floats in flight keep a row's step busy
  // Up to 13 vectors a group: 26 registers and 4 constants. From 9 on, the weights go through
  // the FMA units, which leaves the add units to the compare and the subtract: measured on Zen 5,
  // long rows 1.16 -> 1.00 cycles a float, 197-float rows 1.50 -> 1.21 (one group of 13, not 8 + 5).
  static constexpr int kGroupMax = 13, kFmaFrom = 9;
  static constexpr bool kRowsShareGroups = true;  // 128-float rows 1.31 -> 1.14 cycles a float

  static M Lanes(int64_t count) { return static_cast<M>((1u << count) - 1u); }
  static V Set(float f) { return _mm512_set1_ps(f); }
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static V LoadPart(const float* p, int64_t count, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), Lanes(count), p);
  }
  static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void StorePart(float* p, V v, int64_t count) { _mm512_mask_storeu_ps(p, Lanes(count), v); }
  static M AtLeast(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static M Greater(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static V Where(M m, V a, V b) { return _mm512_mask_mov_ps(b, m, a); }
  static V SubWhere(V a, M m, V b) { return _mm512_mask_sub_ps(a, m, a, b); }
  static V AddWhere(V a, M m, V b) { return _mm512_mask_add_ps(a, m, a, b); }
  static V AddWhereFma(V a, M m, V b) { return _mm512_mask3_fmadd_ps(b, Set(1.f), a, m); }  // b*1 + a: exact
  static V KeepNaN(V out, V in) { return _mm512_mask_mov_ps(out, _mm512_cmp_ps_mask(in, in, _CMP_UNORD_Q), in); }
  static V Blend(V a, V b, int64_t count) { return _mm512_mask_mov_ps(a, Lanes(count), b); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V Div(V a, V b) { return _mm512_div_ps(a, b); }
  static V Max(V a, V b) { return _mm512_max_ps(a, b); }  // b where either is NaN
  static V Min(V a, V b) { return _mm512_min_ps(a, b); }  // b where either is NaN
  static V Round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V ScaleByPow2(V a, V k) { return _mm512_scalef_ps(a, k); }
  static V Floor(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static float SumLanes(V a) { return _mm512_reduce_add_ps(a); }
  static float MaxLanes(V a) { return _mm512_reduce_max_ps(a); }
};

// float16 conversions, 16 at a time; a tail goes through a full-width copy (AVX-512F alone
// has no 16-bit masked loads or stores).
__m256i LoadHalves(const uint16_t* h) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)); }
void StoreHalves(uint16_t* h, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(h), v); }
constexpr int kNearestEven = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

void HalfToFloat(const uint16_t* h, float* f, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(f + i, _mm512_cvtph_ps(LoadHalves(h + i)));
  if (i == n) return;
  uint16_t tail[16] = {0};
  for (int64_t j = i; j < n; ++j) tail[j - i] = h[j];
  _mm512_mask_storeu_ps(f + i, Avx512::Lanes(n - i), _mm512_cvtph_ps(LoadHalves(tail)));
}

void FloatToHalf(const float* f, uint16_t* h, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) StoreHalves(h + i, _mm512_cvtps_ph(_mm512_loadu_ps(f + i), kNearestEven));
  if (i == n) return;
  uint16_t tail[16];
  StoreHalves(tail, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(Avx512::Lanes(n - i), f + i), kNearestEven));
  for (int64_t j = i; j < n; ++j) h[j] = tail[j - i];
}

}  // namespace

extern const RowOps kRowOpsAvx512 = RowKernels<Avx512>::Table("avx512", &HalfToFloat, &FloatToHalf);

}  // namespace sit
