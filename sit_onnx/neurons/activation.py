"""Spiking activations: SI-exp's few-spike neuron fitted to GELU, SiLU, Sigmoid, Tanh, HardSigmoid
or HardSwish.

The neuron is SI-exp's (`v=x; z=H(v-T(t)); v-=h(t)z`) with its output `bias + sum d(t)z(t)`:
only the parameter set differs. It is fitted on a range [LO, HI]; outside it each side
follows a straight tail `slope*x + intercept` that the function itself tends to (GELU, SiLU,
HardSwish: 0 below, the identity above; the others saturate), so no input is out of range.
A NaN stays NaN.

GELU, SiLU and HardSwish also have gates (Phi, Sigmoid, HardSigmoid: `gelu_gate`, ...): a gate
set's op multiplies its neuron by x (attribute `gate`), x * gate(x) being the function itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from sit_onnx.atomic import write_text_atomic
from sit_onnx.errors import SitOnnxError
from sit_onnx.neurons.params import ACTIVATION_FORMAT, FLOAT32_MAX, NeuronParams, params_from_json, read_set_file
from sit_onnx.neurons.params import FORMAT as PARAMS_FORMAT
from sit_onnx.neurons.si_exp import compute_dtype, si_exp

FORMAT = ACTIVATION_FORMAT
FORMAT_VERSION = 1
EVAL_POINTS = 100_000
SHIPPED_STEPS = (8, 10, 12, 14, 16)


erf = np.vectorize(math.erf, otypes=[np.float64])  # float64 erf (numpy has none)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _silu(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _hardsigmoid(x: np.ndarray) -> np.ndarray:  # torch's: relu6(x + 3) / 6
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _hardswish(x: np.ndarray) -> np.ndarray:
    return x * _hardsigmoid(x)


def _normal_cdf(x: np.ndarray) -> np.ndarray:  # GELU's gate: GELU(x) = x * Phi(x)
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class ActivationFunction:
    """A target: its exact float64 form, the range its shipped sets cover, and its tails."""

    name: str
    exact: Callable[[np.ndarray], np.ndarray]
    default_range: tuple[float, float]
    tails: tuple[float, float, float, float]  # slope, intercept below LO; slope, intercept above HI
    # A gate g of x * g(x) (the op's `gate` attribute): the neuron computes g, the op multiplies it
    # by x inside the range; outside, the tails are the gated function's own. Fitted and judged by
    # x * g against `gates` (the function a site computes), so its error counts times |x|.
    gates: str | None = None

    @property
    def site_function(self) -> str:
        return self.gates or self.name


_UNIT_STEP_TAILS = (0.0, 0.0, 0.0, 1.0)  # 0 below the range, 1 above: a sigmoid saturates
_ZERO_THEN_IDENTITY = (0.0, 0.0, 1.0, 0.0)  # 0 below, x above: GELU, SiLU, HardSwish

SITE_FUNCTIONS = {
    f.name: f
    for f in (
        ActivationFunction("gelu", _gelu, (-4.0, 4.0), _ZERO_THEN_IDENTITY),
        ActivationFunction("silu", _silu, (-8.0, 8.0), _ZERO_THEN_IDENTITY),
        ActivationFunction("sigmoid", _sigmoid, (-8.0, 8.0), _UNIT_STEP_TAILS),
        ActivationFunction("tanh", np.tanh, (-4.0, 4.0), (0.0, -1.0, 0.0, 1.0)),
        ActivationFunction("hardsigmoid", _hardsigmoid, (-3.0, 3.0), _UNIT_STEP_TAILS),
        ActivationFunction("hardswish", _hardswish, (-3.0, 3.0), _ZERO_THEN_IDENTITY),
    )
}
GATE_FUNCTIONS = {
    f.name: f
    for f in (
        ActivationFunction("gelu_gate", _normal_cdf, (-4.0, 4.0), _ZERO_THEN_IDENTITY, gates="gelu"),
        ActivationFunction("silu_gate", _sigmoid, (-8.0, 8.0), _ZERO_THEN_IDENTITY, gates="silu"),
        ActivationFunction("hardswish_gate", _hardsigmoid, (-3.0, 3.0), _ZERO_THEN_IDENTITY, gates="hardswish"),
    )
}
FUNCTIONS = {**SITE_FUNCTIONS, **GATE_FUNCTIONS}  # every target a set can be fitted to
GATE_OF = {f.gates: f.name for f in GATE_FUNCTIONS.values()}  # site function -> its gate


def set_function(site_function: str, gated: bool) -> str:
    """The function of the set a site of `site_function` gets: its gate when gated and it has one."""
    return GATE_OF.get(site_function, site_function) if gated else site_function


def activation_function(name: str) -> ActivationFunction:
    if name not in FUNCTIONS:
        raise SitOnnxError(f"unknown activation {name!r}; known: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[name]


def site_exact(function: str, x: np.ndarray) -> np.ndarray:
    """The float64 function a set's site computes (a gate's: the gated function)."""
    return activation_function(activation_function(function).site_function).exact(x)


@dataclass(frozen=True)
class ActivationParams:
    """One fitted activation neuron: the FS neuron (T, h, d and its range), its bias and tails."""

    function: str
    neuron: NeuronParams
    bias: float = 0.0
    tails: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "bias", float(self.bias))
        object.__setattr__(self, "tails", tuple(float(v) for v in self.tails))
        activation_function(self.function)
        if self.neuron.neurons != 1:
            raise SitOnnxError("an activation set is one neuron, not an ensemble")
        if len(self.tails) != 4:
            raise SitOnnxError(f"tails holds {len(self.tails)} values; need 4 (slope, intercept below; above)")
        if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in (self.bias, *self.tails)):
            raise SitOnnxError("an activation set's bias and tails must be finite float32 numbers")
        with np.errstate(over="ignore"):  # the op stores its range as float32: beyond it, inf
            low, high = (np.float32(v) for v in self.neuron.input_range)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise SitOnnxError(
                f"an activation set's range {list(self.neuron.input_range)} must stay finite with LO < HI in float32"
            )

    @property
    def steps(self) -> int:
        return self.neuron.steps

    @property
    def input_range(self) -> tuple[float, float]:
        return self.neuron.input_range

    def rescaled(self, beta: float) -> ActivationParams:
        """The set computing f(beta x) / beta, exactly this neuron on beta x: every threshold,
        reset, weight, the bias, the range and the tails' intercepts divided by beta (the neuron's
        membrane is then v / beta throughout, its spikes the same). x * Sigmoid(beta x), Swish-beta
        (CLIP's QuickGELU: beta = 1.702), is SiLU's set rescaled. A gate's weights and bias stay:
        it computes Sigmoid(beta x), which the op multiplies by x into SiLU(beta x) / beta."""
        if not (math.isfinite(beta) and beta > 0):
            raise SitOnnxError(f"an activation set can be rescaled by a finite beta > 0, not {beta!r}")
        n = self.neuron
        out = 1.0 if self.gate else beta
        scaled = {name: tuple(v / beta for v in getattr(n, name)) for name in ("thresholds", "resets", "input_range")}
        neuron = replace(
            n,
            **scaled,
            weights=tuple(v / out for v in n.weights),
            rmse=n.rmse / beta,
            max_error=n.max_error / beta,
            meta={**n.meta, "input_scale": beta},
        )
        s_lo, c_lo, s_hi, c_hi = self.tails
        return replace(self, neuron=neuron, bias=self.bias / out, tails=(s_lo, c_lo / beta, s_hi, c_hi / beta))

    @property
    def gate(self) -> bool:
        """Whether this set is a gate: the op multiplies its neuron's output by x (attribute `gate`)."""
        return activation_function(self.function).gates is not None

    def to_json(self) -> str:
        record = {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}
        record["neuron"] = json.loads(self.neuron.to_json())
        return json.dumps(record, indent=2, allow_nan=True) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(Path(path), self.to_json())


def activation_from_json(text: str, source: str = "<string>") -> ActivationParams:
    """Parse and validate an activation set; every problem is one SitOnnxError line."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        raise SitOnnxError(f"{source}: not valid JSON") from None
    if isinstance(record, dict) and record.get("format") == PARAMS_FORMAT:
        raise SitOnnxError(f"{source}: an SI-exp parameter set, not an activation set; it goes to --params")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SitOnnxError(f'{source}: not a sit-onnx activation file (expected "format": "{FORMAT}")')
    if record.get("version") != FORMAT_VERSION:
        raise SitOnnxError(f"{source}: activation file version {record.get('version')!r}, this sit-onnx reads 1")
    missing = [k for k in ("function", "neuron", "bias", "tails") if k not in record]
    if missing:
        raise SitOnnxError(f"{source}: activation file lacks {', '.join(missing)}")
    tails, bias = record["tails"], record["bias"]
    numbers = tails if isinstance(tails, list) else [None]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*numbers, bias]):
        raise SitOnnxError(f"{source}: bias must be a number and tails a list of numbers")
    neuron = params_from_json(json.dumps(record["neuron"]), f"{source}: neuron")
    try:
        return ActivationParams(str(record["function"]), neuron, bias, tails)
    except SitOnnxError as exc:
        raise SitOnnxError(f"{source}: {exc}") from None


def load_activation(path: str | os.PathLike) -> ActivationParams:
    return activation_from_json(read_set_file(Path(path), "activation"), str(path))


def shipped_name(function: str, steps: int) -> str:
    lo, hi = activation_function(function).default_range
    return f"{function}_k{steps}_{lo:g}_{hi:g}.json"


def shipped_activation(function: str, steps: int) -> ActivationParams:
    """The set shipped for `function` at K=`steps` on its default range."""
    name = shipped_name(function, steps)
    resource = resources.files("sit_onnx.neurons") / "data" / name
    if not resource.is_file():
        have = ", ".join(str(k) for k in SHIPPED_STEPS)
        raise SitOnnxError(f"no shipped {function} set for K={steps}; shipped for K = {have}")
    return activation_from_json(resource.read_text(encoding="utf-8"), name)


def spiking_activation(x: np.ndarray, params: ActivationParams, return_spikes: bool = False):
    """The reference of the SpikingActivation op, in the kernels' float32 order: the neuron's
    sum of d(t)z(t), plus the bias, times x for a gate set; below LO / above HI the tail (a slope
    of 0 gives the intercept itself, so -inf below GELU's range is 0, not NaN)."""
    x = np.asarray(x)
    work = compute_dtype(x.dtype)
    xw = x.astype(work)
    out, spikes = si_exp(xw, params.neuron, return_spikes=True) if return_spikes else (si_exp(xw, params.neuron), None)
    lo, hi = (work.type(v) for v in params.input_range)
    s_lo, c_lo, s_hi, c_hi = (work.type(v) for v in params.tails)
    with np.errstate(over="ignore"):  # a sloped tail, or float16's range, may overflow to +-inf, as the kernels do
        y = out + work.type(params.bias)
        y = xw * y if params.gate else y
        below = c_lo if s_lo == 0 else s_lo * xw + c_lo
        above = c_hi if s_hi == 0 else s_hi * xw + c_hi
        y = np.where(xw < lo, below, np.where(xw > hi, above, y)).astype(x.dtype, copy=False)
    if return_spikes:
        spikes &= ((xw >= lo) & (xw <= hi))[..., None]  # the tails spike nowhere
        return y, spikes
    return y


@dataclass(frozen=True)
class ActivationQuality:
    function: str
    steps: int
    range: tuple[float, float]
    rmse: float  # of the site's output on the range, uniform points (a gate's: of x * gate)
    max_error: float
    mean_spikes: float
    tail_max_error: float  # |tail - function| at the range ends, the jump a user sees there


def activation_quality(params: ActivationParams, points: int = EVAL_POINTS, seed: int = 12345) -> ActivationQuality:
    lo, hi = params.input_range
    x = np.random.default_rng(seed).uniform(lo, hi, points)
    y, spikes = spiking_activation(x, params, return_spikes=True)
    err = y - site_exact(params.function, x)
    ends = np.array([lo - 1e-6, hi + 1e-6, lo - 100.0, hi + 100.0])
    tail_err = np.abs(spiking_activation(ends, params) - site_exact(params.function, ends))
    return ActivationQuality(
        params.function,
        params.steps,
        (lo, hi),
        float(np.sqrt(np.mean(err**2))),
        float(np.max(np.abs(err))),
        float(spikes.sum(axis=-1).mean()),
        float(tail_err.max()),
    )


def fit_activation(
    function: str,
    steps: int = 12,
    input_range: tuple[float, float] | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    samples: np.ndarray | None = None,
    warm_start: ActivationParams | None = None,
    **fit_options,
) -> ActivationParams:
    """Fit the neuron and its bias to `function` on the range (default: the function's own)
    by SI-exp's two phases (surrogate-gradient explore, coordinate polish), d and bias by least squares.
    With `samples` (real inputs of the activation), the error is weighted by how often each part
    of the range occurs there (plus a floor, so no part is abandoned); a gate's, also by |x|. With
    `warm_start` (a set of the same function and K), the exploration is skipped: its T and h are polished."""
    from sit_onnx.neurons.fit import (
        GRID_POINTS,
        FitOptions,
        LeastSquaresTarget,
        check_fit_width,
        explore_start,
        hop_steps,
        polish_steps,
    )

    target = activation_function(function)
    lo, hi = (float(v) for v in (input_range or target.default_range))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SitOnnxError(f"--range: need finite LO < HI, got {lo:g} {hi:g}")
    check_fit_width(lo, hi)
    opts = replace(FitOptions(), steps=steps, input_range=(lo, hi), seed=seed, **fit_options)
    tick = (lambda: progress(1)) if progress else (lambda: None)
    x = np.linspace(lo, hi, GRID_POINTS)
    y = target.exact(x)
    weight = None if samples is None else sample_weights(x, samples)
    if target.gates:  # the site's error is x times the gate's
        weight = (1.0 if weight is None else weight) * gate_weights(x)
    if warm_start is not None:
        if warm_start.function != function or warm_start.steps != steps:
            raise SitOnnxError(
                f"warm start: a {warm_start.function} set of K={warm_start.steps}; need {function}, K={steps}"
            )
        thresholds, resets = np.array(warm_start.neuron.thresholds), np.array(warm_start.neuron.resets)
    else:
        thresholds, resets = explore_start(x, opts, tick, target=y, bias=True, weight=weight)

    evaluate = LeastSquaresTarget(x, y, steps, opts.ridge, weight, bias=True)
    thresholds, resets = polish_steps(evaluate, thresholds, resets, hi - lo, opts.polish_rounds, tick)
    thresholds, resets = hop_steps(evaluate, thresholds, resets, hi - lo, opts.hops, seed, tick)
    _, solved = evaluate.solve(thresholds, resets)
    meta = {"seed": seed, "polish_rounds": opts.polish_rounds, "hops": opts.hops}
    meta.update(
        {"warm_start": warm_start.neuron.method}
        if warm_start
        else {"restarts": opts.restarts, "iterations": opts.iterations}
    )
    if samples is not None:
        meta["weighted_by_samples"] = int(np.size(samples))
    start = "warm start" if warm_start else "surrogate-gradient explore"
    method = f"{start} + coordinate polish" + (f" + {opts.hops} basin hops" if opts.hops else "")
    neuron = NeuronParams(thresholds, resets, solved[:-1], (lo, hi), method=method, meta=meta)
    params = ActivationParams(function, neuron, float(solved[-1]), target.tails)
    quality = activation_quality(params)
    return replace(params, neuron=replace(neuron, rmse=quality.rmse, max_error=quality.max_error))


SAMPLE_WEIGHT_FLOOR = 0.05  # of the mean density: rarely seen parts of the range still count
GATE_WEIGHT_FLOOR = 1e-3  # of the range's largest |x|: the gate still has a target where x is 0


def gate_weights(grid: np.ndarray) -> np.ndarray:
    """Per grid point, |x| (floored): a gate's error reaches the site multiplied by x."""
    scale = float(np.max(np.abs(grid)))
    return np.maximum(np.abs(grid), GATE_WEIGHT_FLOOR * scale)


def sample_weights(grid: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Per grid point, sqrt of the samples' density there (residuals are squared), floored, mean 1."""
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    edges = np.concatenate([[grid[0]], (grid[1:] + grid[:-1]) / 2, [grid[-1]]])
    counts = np.histogram(samples[np.isfinite(samples)], bins=edges)[0].astype(np.float64)
    # smooth over ~1% of the range: a fit must not chase the noise of one histogram bin
    width = max(1, grid.size // 100)
    density = np.convolve(counts, np.ones(width) / width, mode="same")
    density = density / density.mean() if density.sum() > 0 else np.ones_like(density)
    weight = np.sqrt(np.maximum(density, SAMPLE_WEIGHT_FLOOR))
    return weight / weight.mean()


def activation_ticks(
    polish_rounds: int = 40, restarts: int = 8, iterations: int = 1500, hops: int = 0
) -> int:  # pragma: no mutate block
    """The fit's progress-bar total (display only)."""
    return restarts * iterations + polish_rounds + hops
