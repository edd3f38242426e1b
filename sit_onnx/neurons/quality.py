"""How well a parameter set does: SI-exp fit error, spike counts, Spiking-Softmax error.

These are the figures `sit-onnx neuron show` and `sit-onnx neuron sweep` print
(the paper's Figure 7), measured on seeded random inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from sit_onnx.neurons.objective import RowScore, RowSet, family_rows, score
from sit_onnx.neurons.params import NeuronParams
from sit_onnx.neurons.si_exp import si_exp
from sit_onnx.neurons.softmax import SoftmaxOptions, softmax, spiking_softmax

EVAL_POINTS = 100_000


@dataclass(frozen=True)
class ExpQuality:
    steps: int
    range: tuple[float, float]
    rmse: float
    max_error: float
    mean_spikes: float  # expected spikes per input, uniform over the range
    points: int


@dataclass(frozen=True)
class SoftmaxQuality:
    length: int
    protocol: str
    mae: float
    mse: float
    max_error: float
    kl: float  # mean KL(p || q), p the exact softmax


def exp_quality(params: NeuronParams, points: int = EVAL_POINTS, seed: int = 12345) -> ExpQuality:
    lo, hi = params.input_range
    x = np.random.default_rng(seed).uniform(lo, hi, points)
    out, spikes = si_exp(x, params, return_spikes=True)
    err = out - np.exp(x)
    return ExpQuality(
        params.steps,
        (lo, hi),
        float(np.sqrt(np.mean(err**2))),
        float(np.max(np.abs(err))),
        float(spikes.sum(axis=-1).mean()),
        points,
    )


def mean_kl(p: np.ndarray, q: np.ndarray, axis: int = -1) -> float:
    """Mean over rows of KL(p || q), rows along `axis`; q is floored at 1e-12 (a spiking 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(np.maximum(q, 1e-12))), 0.0)
    return float(terms.sum(axis=axis).mean())


def softmax_error(p: np.ndarray, q: np.ndarray, length: int, protocol: str) -> SoftmaxQuality:
    """Error of q against the exact softmax p, rows along the last axis."""
    diff = np.abs(p - q)
    return SoftmaxQuality(
        length, protocol, float(diff.mean()), float((diff**2).mean()), float(diff.max()), mean_kl(p, q)
    )


PROTOCOLS = {
    "paper": "inputs uniform in [-1, 1], no shift, set fitted on [-1, 1]",
    "max-shift": "logits ~ N(0, 3^2), max subtracted, set fitted on [-R, 0]",
}


def softmax_quality(
    params: NeuronParams, length: int, protocol: str, vectors: int = 2000, seed: int = 7
) -> SoftmaxQuality:
    rng = np.random.default_rng(seed)
    if protocol == "paper":
        x = rng.uniform(-1, 1, (vectors, length))
        options = SoftmaxOptions()
    elif protocol == "max-shift":
        x = rng.normal(0, 3, (vectors, length))
        options = SoftmaxOptions(shift=True)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    q = spiking_softmax(x, params, axis=-1, options=options)
    return softmax_error(softmax(x), q, length, protocol)


HELD_OUT_SEED = 12345  # the fits draw their family rows with seed 0: the figures use other rows


def row_quality(params: NeuronParams, rows: RowSet | None = None) -> RowScore:
    """Spiking-Softmax error on max-shifted rows (default: a held-out draw of the N(0, sigma^2)
    family, n = 2..512, sigma = 1..8): mean KL, mean and largest worst weight error. The
    softmax objective's figure, for any set fitted on a range that holds [LO, 0]."""
    rows = rows or _held_out_rows()
    return score(rows, si_exp(rows.x, params))


@lru_cache(maxsize=1)
def _held_out_rows() -> RowSet:
    """Drawn once per process: a sweep scores every shipped set on the same rows."""
    return family_rows(HELD_OUT_SEED)


def as_dict(record) -> dict:
    out = asdict(record)
    if "range" in out:
        out["range"] = list(out["range"])
    return out
