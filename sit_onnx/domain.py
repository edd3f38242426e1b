"""The custom-op contract shared by the graph rewrite, the lowering and the C++ kernels.

`custom_ops/include/sit_domain.h` holds the same values; a test checks they match.
"""

DOMAIN = "ai.sit"
DOMAIN_VERSION = 1
SPIKING_EXP = "SpikingExp"
SPIKING_NORM = "SpikingNorm"
SPIKING_ACTIVATION = "SpikingActivation"  # the same neuron fitted to GELU, SiLU, Sigmoid or Tanh, with tails
SPIKING_SOFTMAX = "SpikingSoftmax"  # the fused form: [Sigmoid] -> [max-shift] -> SpikingExp -> SpikingNorm
MAX_STEPS = 64
