// The inner loops of the CPU kernels over contiguous floats, compiled once per instruction
// set (AVX-512, AVX2, portable C++) and chosen for the CPU the session runs on.
#pragma once

#include <cstdint>
#include <string>

#include "../include/spiking_attrs.h"

namespace sit {

constexpr int64_t kSharedRows = 8;  // rows one si_exp_rows call takes: their maxima, SI-exp, then scaling

struct RowOps {
  const char* isa;
  int64_t lanes_in_flight;  // floats SI-exp steps together: rows this long keep the vector units busy
  int64_t shared_row_width;  // rows a multiple of this long go faster through si_exp_rows; 0: no si_exp_rows
  // y = SI-exp(x - offset) over n floats (in place allowed); NaN in gives NaN out. Returns sum(y),
  // SI-norm's threshold when the n floats are one row.
  float (*si_exp)(const float* x, float* y, int64_t n, const ExpParams& p, float offset);
  // si_exp of 1..kSharedRows rows of n floats end to end (n > 0 a multiple of shared_row_width), row r
  // shifted by offsets[r], its sum in sums[r]: the same floats and sums as one si_exp call per row,
  // faster for rows of a few hundred floats. Null where shared_row_width is 0.
  void (*si_exp_rows)(const float* x, float* y, int64_t rows, int64_t n, const ExpParams& p, const float* offsets,
                      float* sums);
  // Largest value of x[0..n) (-inf for n == 0). A NaN may be skipped: SI-exp turns it into a NaN row anyway.
  float (*max)(const float* x, int64_t n);
  float (*sum)(const float* x, int64_t n);
  // SI-norm of one row given its threshold v_th = sum(w): w/v_th (steps == 0) or floor(steps*w/v_th)/steps.
  void (*scale)(const float* w, float* y, int64_t n, float v_th, int64_t steps);
  // SpikingActivation's finish: y (holding SI-exp of x) becomes y + bias on [low, high], else the tail.
  void (*activation)(const float* x, float* y, int64_t n, const ActivationAttrs& a);
  // y = x - offset.
  void (*shift)(const float* x, float* y, int64_t n, float offset);
  // y = 1 / (1 + e^-x), within a few ulp of the float32 reference.
  void (*sigmoid)(const float* x, float* y, int64_t n);
  // float16 bits <-> float, rounding to nearest even; null where the set has no instruction for it.
  void (*half_to_float)(const uint16_t* h, float* f, int64_t n);
  void (*float_to_half)(const float* f, uint16_t* h, int64_t n);
};

extern const RowOps kRowOpsPortable;
#ifdef SIT_X86_SIMD
extern const RowOps kRowOpsAvx2;
extern const RowOps kRowOpsAvx512;
#endif

// The fastest set this CPU runs, or the one SIT_ONNX_CPU_ISA (avx512, avx2, portable) names.
// Returns "" or why the named set cannot run here.
std::string SelectRowOps(const RowOps** out);

}  // namespace sit
