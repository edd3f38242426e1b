"""Spiking-Softmax: optional Sigmoid, optional max-shift, SI-exp per element, then SI-norm.

The order matches what the graph rewrite emits, so the reference and a converted
graph agree bit for bit in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sit_onnx.neurons.params import NeuronParams
from sit_onnx.neurons.si_exp import compute_dtype, si_exp
from sit_onnx.neurons.si_norm import si_norm


@dataclass(frozen=True)
class SoftmaxOptions:
    """How a softmax site is converted (see `sit-onnx rewrite --help`)."""

    sigmoid: bool = False
    shift: bool = False
    time_steps: int = 0


def prepare_input(x: np.ndarray, axis: int, options: SoftmaxOptions) -> np.ndarray:
    """What SI-exp sees: x, optionally through a Sigmoid, optionally minus its max along axis."""
    work = compute_dtype(np.asarray(x).dtype)
    v = np.asarray(x).astype(work)
    with np.errstate(over="ignore", invalid="ignore"):
        if options.sigmoid:
            v = (1 / (1 + np.exp(-v))).astype(work)
        if options.shift:
            v = v - np.max(v, axis=axis, keepdims=True, initial=-np.inf)
    return v


def spiking_softmax(
    x: np.ndarray, params: NeuronParams, axis: int = -1, options: SoftmaxOptions = SoftmaxOptions()
) -> np.ndarray:
    """Spiking-Softmax of x along axis; result in x's dtype."""
    x = np.asarray(x)
    exp_out = si_exp(prepare_input(x, axis, options), params)
    return si_norm(exp_out, axis=axis, time_steps=options.time_steps).astype(x.dtype, copy=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Plain numpy softmax, the baseline every error is measured against."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
