#include "include/spiking_attrs.h"

#include <cmath>

namespace sit {

std::string CheckExpParams(const std::vector<float>& thresholds, const std::vector<float>& resets,
                           const std::vector<float>& weights, ExpParams* out) {
  const size_t k = thresholds.size();
  if (k < 1 || k > static_cast<size_t>(kMaxSteps)) {
    return "thresholds has " + std::to_string(k) + " values; SpikingExp takes 1 to " + std::to_string(kMaxSteps);
  }
  if (resets.size() != k || weights.size() != k) {
    return "thresholds, resets and weights must have equal lengths (got " + std::to_string(k) + ", " +
           std::to_string(resets.size()) + ", " + std::to_string(weights.size()) + ")";
  }
  for (size_t t = 0; t < k; ++t) {
    if (!std::isfinite(thresholds[t]) || !std::isfinite(resets[t]) || !std::isfinite(weights[t])) {
      return "step " + std::to_string(t) + " holds a NaN or infinite value";
    }
    out->thresholds[t] = thresholds[t];
    out->resets[t] = resets[t];
    out->weights[t] = weights[t];
  }
  out->steps = static_cast<int32_t>(k);
  return "";
}

std::string CheckActivationAttrs(float low, float high, float bias, const std::vector<float>& tails, int64_t gate,
                                 ActivationAttrs* out) {
  if (!std::isfinite(low) || !std::isfinite(high) || !(low < high)) {
    return "low and high must be finite with low < high (got " + std::to_string(low) + ", " + std::to_string(high) + ")";
  }
  if (tails.size() != 4) return "tails has " + std::to_string(tails.size()) + " values; need 4";
  if (!std::isfinite(bias)) return "bias must be finite";
  if (gate != 0 && gate != 1) return "gate must be 0 or 1, got " + std::to_string(gate);
  for (const float v : tails) {
    if (!std::isfinite(v)) return "tails holds a NaN or infinite value";
  }
  out->low = low;
  out->high = high;
  out->bias = bias;
  out->gate = gate == 1;
  for (int i = 0; i < 4; ++i) out->tails[i] = tails[static_cast<size_t>(i)];
  return "";
}

std::string CheckNormAttrs(int64_t axis, int64_t time_steps, int64_t rank, NormAttrs* out) {
  if (time_steps < 0) return "time_steps must be >= 0, got " + std::to_string(time_steps);
  if (rank >= 0 && (axis < -rank || axis >= rank || rank == 0)) {
    return "axis " + std::to_string(axis) + " is out of range for a rank-" + std::to_string(rank) + " input";
  }
  out->axis = axis;
  out->time_steps = time_steps;
  return "";
}

std::string SplitAtAxis(const std::vector<int64_t>& shape, int64_t axis, AxisSplit* out) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  if (axis < -rank || axis >= rank || rank == 0) {
    return "axis " + std::to_string(axis) + " is out of range for a rank-" + std::to_string(rank) + " input";
  }
  if (axis < 0) axis += rank;
  AxisSplit split;
  for (int64_t i = 0; i < rank; ++i) {
    if (i < axis) split.outer *= shape[i];
    else if (i == axis) split.n = shape[i];
    else split.inner *= shape[i];
  }
  *out = split;
  return "";
}

}  // namespace sit
