// Row loops for every other CPU, on the compiler's generic 4-float vectors (SSE2 on any
// x86-64, NEON on Arm): a compare gives all-ones lanes, so a step masks the reset and weight
// with AND before subtracting and adding, as the AVX2 set does.
#include <cmath>
#include <cstring>

#include "row_kernels.h"

namespace sit {
namespace {

typedef float Floats4 __attribute__((vector_size(16)));
typedef int32_t Ints4 __attribute__((vector_size(16)));

struct Portable {
  using V = Floats4;
  using M = Ints4;
  static constexpr int kWidth = 4;
  static constexpr int kVectors = 8;
  static constexpr int kGroupMax = 8, kFmaFrom = 9;  // no FMA form
  static constexpr bool kRowsShareGroups = false;  // measured 5% slower

  static V Bits(M m) { return reinterpret_cast<V>(m); }
  static M Ints(V v) { return reinterpret_cast<M>(v); }
  static M Lanes(int64_t count) { return Ints4{0, 1, 2, 3} < static_cast<int32_t>(count); }
  static V Select(M m, V a, V b) { return Bits((Ints(a) & m) | (Ints(b) & ~m)); }
  static V Set(float f) { return V{f, f, f, f}; }
  static V Load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static V LoadPart(const float* p, int64_t count, float fill) {
    V v = Set(fill);
    for (int64_t i = 0; i < count; ++i) v[i] = p[i];
    return v;
  }
  static void Store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static void StorePart(float* p, V v, int64_t count) {
    for (int64_t i = 0; i < count; ++i) p[i] = v[i];
  }
  static M AtLeast(V a, V b) { return a >= b; }
  static M Greater(V a, V b) { return a > b; }
  static V Where(M m, V a, V b) { return Select(m, a, b); }
  static V SubWhere(V a, M m, V b) { return a - Bits(Ints(b) & m); }  // a - 0 == a, also for -0
  static V AddWhere(V a, M m, V b) { return a + Bits(Ints(b) & m); }
  static V AddWhereFma(V a, M m, V b) { return AddWhere(a, m, b); }
  static V KeepNaN(V out, V in) { return Select(in != in, in, out); }
  static V Blend(V a, V b, int64_t count) { return Select(Lanes(count), b, a); }
  static V Add(V a, V b) { return a + b; }
  static V Sub(V a, V b) { return a - b; }
  static V Mul(V a, V b) { return a * b; }
  static V Div(V a, V b) { return a / b; }
  static V Max(V a, V b) { return Select(a > b, a, b); }  // b where either is NaN, as the SIMD sets
  static V Min(V a, V b) { return Select(a < b, a, b); }  // b where either is NaN, as the SIMD sets
  static V Round(V a) {  // to nearest even for |a| < 2^22 (the only use: Exp's k, |k| <= 128)
    const V magic = Set(12582912.f);  // 1.5 * 2^23: adding it leaves no fraction bits
    return (a + magic) - magic;
  }
  // a * 2^k for integral k in [-127, 128], as two factors so that neither leaves the normal range.
  static V ScaleByPow2(V a, V k) {
    const Ints4 whole = __builtin_convertvector(k, Ints4), half = whole >> 1;
    return a * Bits((half + 127) << 23) * Bits((whole - half + 127) << 23);
  }
  static V Floor(V a) {
    for (int i = 0; i < 4; ++i) a[i] = std::floor(a[i]);
    return a;
  }
  static float SumLanes(V a) { return (a[0] + a[1]) + (a[2] + a[3]); }
  static float MaxLanes(V a) {
    const float low = a[0] > a[1] ? a[0] : a[1], high = a[2] > a[3] ? a[2] : a[3];
    return low > high ? low : high;
  }
};

}  // namespace

extern const RowOps kRowOpsPortable = RowKernels<Portable>::Table("portable");

}  // namespace sit
