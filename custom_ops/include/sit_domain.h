// The custom-op contract; sit_onnx/domain.py holds the same values (a test checks they match).
#pragma once

namespace sit {
constexpr const char* kDomain = "ai.sit";
constexpr int kDomainVersion = 1;
constexpr const char* kSpikingExp = "SpikingExp";
constexpr const char* kSpikingNorm = "SpikingNorm";
constexpr const char* kSpikingSoftmax = "SpikingSoftmax";
constexpr const char* kSpikingActivation = "SpikingActivation";
constexpr int kMaxSteps = 64;
}  // namespace sit
