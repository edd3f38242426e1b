"""Numpy references of the paper's neurons and their fitted parameter sets."""

from sit_onnx.neurons.params import NeuronParams, load_params, shipped_params
from sit_onnx.neurons.si_exp import si_exp
from sit_onnx.neurons.si_norm import si_norm, simulate_si_norm
from sit_onnx.neurons.softmax import SoftmaxOptions, softmax, spiking_softmax

__all__ = [
    "NeuronParams",
    "SoftmaxOptions",
    "load_params",
    "shipped_params",
    "si_exp",
    "si_norm",
    "simulate_si_norm",
    "softmax",
    "spiking_softmax",
]
