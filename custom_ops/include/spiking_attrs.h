// Attributes of the two ops, read and checked once when a session creates the kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sit_domain.h"

namespace sit {

// One SI-exp neuron: per step t, threshold T, reset h and output weight d.
struct ExpParams {
  int32_t steps = 0;
  float thresholds[kMaxSteps];
  float resets[kMaxSteps];
  float weights[kMaxSteps];
};

// SpikingActivation's numbers beside its neuron: y = bias + sum d(t)z(t) on [low, high] (a gate:
// x times that), else the tail of that side, slope * x + intercept (a slope of 0 gives the
// intercept, also for x = +-inf).
struct ActivationAttrs {
  float low = 0.f, high = 0.f, bias = 0.f;
  float tails[4] = {0.f, 0.f, 0.f, 0.f};  // slope, intercept below low; slope, intercept above high
  bool gate = false;                      // x * gate(x): GELU as x * Phi(x), SiLU as x * Sigmoid(x)
};

struct NormAttrs {
  int64_t axis = -1;
  int64_t time_steps = 0;  // 0: amplified closed form w/V_th; N > 0: floor(N*w/V_th)/N
};

// Returns "" when the attributes are usable, else why not.
std::string CheckExpParams(const std::vector<float>& thresholds, const std::vector<float>& resets,
                           const std::vector<float>& weights, ExpParams* out);
std::string CheckActivationAttrs(float low, float high, float bias, const std::vector<float>& tails, int64_t gate,
                                 ActivationAttrs* out);
std::string CheckNormAttrs(int64_t axis, int64_t time_steps, int64_t rank, NormAttrs* out);

// The softmax axis split of a shape: outer x n x inner, with n the axis length.
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
std::string SplitAtAxis(const std::vector<int64_t>& shape, int64_t axis, AxisSplit* out);

}  // namespace sit
