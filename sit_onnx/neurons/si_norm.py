"""SI-norm, the paper's spiking collaboration normalised neuron (section 3.4), numpy reference.

Along `axis` the threshold is `V_th = sum(w)`. Each neuron receives a regular
train of N input spikes, charges `w` per spike and fires (subtracting `V_th`) when
its membrane reaches `V_th`; its rate `count/N = floor(N*w/V_th)/N` approximates
`w/V_th`. `time_steps=0` is the paper's amplified closed form `w/V_th`, computed as `w * (1/V_th)` in
every implementation (reference, kernels, function body), so that they agree bit for bit.
Where `V_th <= 0` nothing fires and the output is 0; a NaN threshold gives NaN.
"""

from __future__ import annotations

import numpy as np

from sit_onnx.neurons.si_exp import compute_dtype


def si_norm(w: np.ndarray, axis: int = -1, time_steps: int = 0) -> np.ndarray:
    """Closed form of SI-norm; equals `simulate_si_norm(...)` spike for spike."""
    if time_steps < 0:
        raise ValueError(f"time_steps must be >= 0, got {time_steps}")
    w = np.asarray(w)
    work = compute_dtype(w.dtype)
    w_work = w.astype(work)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a row summing past float32: inf
        v_th = np.sum(w_work, axis=axis, keepdims=True)
        if time_steps:
            ratio = np.maximum(np.floor((w_work / v_th) * work.type(time_steps)), 0) / work.type(time_steps)
        else:  # w times 1/V_th, as the kernels (CPU and CUDA) and the function body compute it
            ratio = w_work * (work.type(1) / v_th)
        out = np.where(v_th > 0, ratio, np.where(np.isnan(v_th), v_th, 0))
    return out.astype(w.dtype, copy=False)


def simulate_si_norm(w: np.ndarray, axis: int = -1, time_steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Step the membrane through N input spikes; return `(count / N, count)`.

    This is the neuron as the paper describes it (equations 6-9); `si_norm` is its
    closed form and the tests hold the two equal.
    """
    if time_steps <= 0:
        raise ValueError(f"simulation needs time_steps >= 1, got {time_steps}")
    w = np.asarray(w, dtype=np.float64)
    v_th = np.sum(w, axis=axis, keepdims=True)
    v = np.zeros_like(w)
    count = np.zeros(w.shape, dtype=np.int64)
    active = v_th > 0
    for _ in range(time_steps):
        v = v + w
        fired = (v >= v_th) & active
        v = v - np.where(fired, v_th, 0)
        count += fired
    return count / time_steps, count
