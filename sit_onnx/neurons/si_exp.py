"""SI-exp, the paper's spiking exponential neuron (section 3.3), as a numpy reference.

Edge values are defined, never an exception:
- NaN in gives NaN out (like Softmax, a NaN is not hidden);
- +inf crosses every threshold: out = sum(d), the neuron's saturation value;
- -inf and attention-mask values such as -3.4e38 never fire: out = 0.
"""

from __future__ import annotations

import numpy as np

from sit_onnx.neurons.params import NeuronParams


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 and float32 compute in float32 (as the kernels do); float64 stays float64."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.dtype(np.float64)
    if dtype in (np.float16, np.float32):
        return np.dtype(np.float32)
    raise TypeError(f"SI-exp takes float16, float32 or float64 input, got {dtype}")


def si_exp(x: np.ndarray, params: NeuronParams, return_spikes: bool = False):
    """Run K steps: `v=x; z=H(v-T(t)) with H(0)=1; v-=h(t)z; out+=d(t)z`.

    Returns `out` in x's dtype, or `(out, spikes)` where `spikes` is a bool array of
    shape x.shape + (M*K,), the spike train of every neuron (M=1 but for ensembles,
    whose members see `x + offset_j` and are summed in order).
    """
    x = np.asarray(x)
    work = compute_dtype(x.dtype)
    thresholds = np.asarray(params.thresholds, dtype=work)
    resets = np.asarray(params.resets, dtype=work)
    x_work = x.astype(work)
    k = params.steps
    spikes = np.zeros(x.shape + (k * params.neurons,), dtype=bool) if return_spikes else None
    total = None
    with np.errstate(invalid="ignore", over="ignore"):
        for j, offset in enumerate(params.offsets):
            v = x_work + work.type(offset) if params.neurons > 1 else x_work.copy()
            weights = np.asarray(params.neuron_weights(j), dtype=work)
            out = np.zeros_like(v)
            for t in range(k):
                fired = v >= thresholds[t]
                z = fired.astype(work)
                v = v - resets[t] * z
                out = out + weights[t] * z
                if spikes is not None:
                    spikes[..., j * k + t] = fired
            total = out if total is None else total + out
    with np.errstate(over="ignore"):  # a set whose output exceeds float16's range gives inf, as the kernels do
        total = np.where(np.isnan(x_work), x_work, total).astype(x.dtype, copy=False)
    return (total, spikes) if return_spikes else total
