"""Fit SI-exp's T(t), h(t), d(t) to exp on a range (the FS-neuron method, Stöckl & Maass 2021).

Two phases, both seeded:
1. explore: Adam on T and h through a triangular surrogate of the Heaviside step,
   with d solved exactly by least squares at every iteration (the output is linear
   in d), from several random restarts;
2. polish: coordinate search over each threshold and reset on the true, stepped
   error, d re-solved for every candidate.
The error reported is measured on 100,000 uniform random points, not the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from sit_onnx.errors import SitOnnxError
from sit_onnx.neurons.params import NeuronParams
from sit_onnx.neurons.quality import exp_quality

GRID_POINTS = 10_000  # the paper's training grid: 10,000 evenly spaced points


@dataclass(frozen=True)
class FitOptions:
    steps: int = 12
    input_range: tuple[float, float] = (-1.0, 1.0)
    seed: int = 0
    restarts: int = 8
    iterations: int = 1500
    polish_rounds: int = 40
    surrogate_width: float = 0.2  # as a fraction of the input range
    ridge: float = 1e-9
    init: str = "spread"  # "spread": thresholds evenly down the range, small resets; "random"
    weighting: str = "absolute"  # or "relative": error relative to exp(x)


def spike_matrix(x: np.ndarray, thresholds: np.ndarray, resets: np.ndarray) -> np.ndarray:
    """Spike trains (len(x), K) as float64: the design matrix whose product with d is the output."""
    v = x.astype(np.float64).copy()
    z = np.empty((x.size, thresholds.size))
    for t in range(thresholds.size):
        fired = v >= thresholds[t]
        z[:, t] = fired
        v -= resets[t] * fired
    return z


def solve_weights(z: np.ndarray, target: np.ndarray, ridge: float = 1e-9) -> np.ndarray:
    """Least-squares d for fixed spike trains (a small ridge keeps unused steps at 0)."""
    gram = z.T @ z + ridge * np.eye(z.shape[1])
    return np.linalg.solve(gram, z.T @ target)


def true_rmse(x, target, thresholds, resets, ridge=1e-9, weight=None) -> tuple[float, np.ndarray]:
    """The stepped neuron's (weighted) RMSE with d solved exactly, and that d."""
    z = spike_matrix(x, thresholds, resets)
    w = np.ones_like(x) if weight is None else weight
    d = solve_weights(z * w[:, None], target * w, ridge)
    return float(np.sqrt(np.mean((w * (z @ d - target)) ** 2))), d


def point_weights(x: np.ndarray, weighting: str) -> np.ndarray:
    """Residual weights. absolute: every point alike; relative: squared errors weighted by
    exp(-x), between absolute and fully relative error, so the small values that max-shift
    softmax sums over count more without giving up the large ones (normalised to mean 1)."""
    if weighting == "absolute":
        return np.ones_like(x)
    if weighting == "relative":
        w = np.exp(-x / 2)
        return w / w.mean()
    raise ValueError(f"unknown weighting {weighting!r}; known: absolute, relative")


def scored(params: NeuronParams, method: str, meta: dict) -> NeuronParams:
    """The set with its RMSE and max error on 100,000 random points (the figures `neuron show` prints)."""
    quality = exp_quality(params)
    return replace(params, rmse=quality.rmse, max_error=quality.max_error, method=method, meta=meta)


INITS = ("spread", "random")


def _initial(opts: FitOptions, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Starting T and h for one restart.

    spread (measured best at K=12 on [-1, 1]: RMSE 0.0141-0.0146 over three seeds, against
    0.018-0.030 from random starts): thresholds evenly from the top of the range down, jittered
    by 1% of the range; resets around range/(2K). random: sorted uniform thresholds, resets
    5-60% of the range."""
    lo, hi = opts.input_range
    span, k = hi - lo, opts.steps
    if opts.init == "spread":
        thresholds = np.linspace(hi, lo, k) + rng.normal(0, 0.01 * span, k)
        resets = span / (2 * k) * rng.uniform(0.5, 1.5, k)
    elif opts.init == "random":
        thresholds = np.sort(rng.uniform(lo, hi, k))[::-1].copy()
        resets = rng.uniform(0.05, 0.6, k) * span
    else:
        raise ValueError(f"unknown init {opts.init!r}; known: {', '.join(INITS)}")
    return thresholds, resets


def _explore(x, target, opts: FitOptions, rng: np.random.Generator, tick: Callable[[], None]):
    import torch

    lo, hi = opts.input_range
    span = hi - lo
    width = opts.surrogate_width * span
    k = opts.steps

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s):
            ctx.save_for_backward(s)
            return (s >= 0).to(s.dtype)

        @staticmethod
        def backward(ctx, grad):
            (s,) = ctx.saved_tensors
            return grad * torch.clamp(1 - s.abs() / width, min=0) / width

    weight = point_weights(x, opts.weighting)
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(target * weight)
    wt = torch.as_tensor(weight)[:, None]
    eye = torch.eye(k, dtype=torch.float64) * opts.ridge
    best = (np.inf, None, None)
    for _ in range(opts.restarts):
        thresholds, resets = _initial(opts, rng)
        thresholds = torch.tensor(thresholds, requires_grad=True)
        resets = torch.tensor(resets, requires_grad=True)
        optim = torch.optim.Adam([thresholds, resets], lr=0.003 * span)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, opts.iterations)
        for it in range(opts.iterations):
            v = xt
            cols = []
            for t in range(k):
                z = Spike.apply(v - thresholds[t])
                cols.append(z)
                v = v - resets[t] * z
            zmat = torch.stack(cols, dim=1) * wt
            with torch.no_grad():
                d = torch.linalg.solve(zmat.T @ zmat + eye, zmat.T @ yt)
            loss = torch.mean((zmat @ d - yt) ** 2)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            if it % 100 == 99 or it == opts.iterations - 1:
                th, rs = thresholds.detach().numpy().copy(), resets.detach().numpy().copy()
                err, _ = true_rmse(x, target, th, rs, opts.ridge, weight)
                if err < best[0]:
                    best = (err, th, rs)
            tick()
    return best


def _polish(x, target, thresholds, resets, opts: FitOptions, tick: Callable[[], None]):
    """Line search on one parameter at a time over a spread of offsets; shrink the spread when stuck."""
    span = opts.input_range[1] - opts.input_range[0]
    weight = point_weights(x, opts.weighting)
    best, _ = true_rmse(x, target, thresholds, resets, opts.ridge, weight)
    spread = 0.25 * span
    offsets = np.concatenate([-np.geomspace(1, 1e-3, 12), np.geomspace(1e-3, 1, 12)])
    for _ in range(opts.polish_rounds):
        improved = False
        for vec in (thresholds, resets):
            for i in range(vec.size):
                old = vec[i]
                best_value = old
                for offset in offsets * spread:
                    vec[i] = old + offset
                    err, _ = true_rmse(x, target, thresholds, resets, opts.ridge, weight)
                    if err < best - 1e-12:
                        best, best_value, improved = err, vec[i], True
                vec[i] = best_value
        tick()
        if not improved:
            spread /= 4
            if spread < 1e-6 * span:
                break
    return thresholds, resets


MAX_FIT_HIGH = 80.0  # exp(80) = 5.5e34: the weights d(t) stay well inside float32, as the ops store them
MAX_FIT_WIDTH = 100.0  # K <= 64 steps cannot follow exp over more than this


def check_fit_range(input_range) -> tuple[float, float]:
    """The range a fit can serve: LO < HI, exp(HI) far inside float32, not wider than MAX_FIT_WIDTH."""
    lo, hi = (float(v) for v in input_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SitOnnxError(f"--range: need finite LO < HI, got {lo:g} {hi:g}")
    if hi > MAX_FIT_HIGH:
        raise SitOnnxError(f"--range: HI={hi:g} is too large: exp({hi:g}) overflows the float32 the ops compute in")
    if hi - lo > MAX_FIT_WIDTH:
        raise SitOnnxError(f"--range: {lo:g}..{hi:g} is wider than {MAX_FIT_WIDTH:g}; fit a narrower range")
    return lo, hi


def fit_si_exp(opts: FitOptions, progress: Callable[[int], None] | None = None) -> NeuronParams:
    """Fit one SI-exp neuron to exp on `opts.input_range`; seeded and reproducible."""
    import torch

    lo, hi = check_fit_range(opts.input_range)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    tick = (lambda: progress(1)) if progress else (lambda: None)
    x = np.linspace(lo, hi, GRID_POINTS)
    target = np.exp(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 10,000 x K tensors: threads only add overhead (and oversubscribe parallel fits)
    try:
        _, thresholds, resets = _explore(x, target, opts, rng, tick)
    finally:
        torch.set_num_threads(threads)
    thresholds, resets = _polish(x, target, thresholds, resets, opts, tick)
    _, weights = true_rmse(x, target, thresholds, resets, opts.ridge, point_weights(x, opts.weighting))
    return scored(
        NeuronParams(thresholds, resets, weights, (lo, hi)),
        method="surrogate-gradient explore + least-squares d + coordinate polish",
        meta={
            "seed": opts.seed,
            "init": opts.init,
            "weighting": opts.weighting,
            "restarts": opts.restarts,
            "iterations": opts.iterations,
            "polish_rounds": opts.polish_rounds,
            "surrogate_width": opts.surrogate_width,
            "grid_points": GRID_POINTS,
        },
    )


ENSEMBLE_SPREADS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)  # half-width of the offsets, as a fraction of the range


def fit_ensemble(single: NeuronParams, neurons: int) -> NeuronParams:
    """M copies of a fitted neuron fed `x + offset_j`, their M*K weights solved jointly.

    T and h are not refitted: the offsets dither the input across the neuron's steps,
    which multiplies the number of distinct output levels. The spread is chosen by the
    error on 100,000 random points.
    """
    if neurons < 2:
        return single
    lo, hi = single.input_range
    span = hi - lo
    x = np.linspace(lo, hi, GRID_POINTS)
    thresholds, resets = np.asarray(single.thresholds), np.asarray(single.resets)
    method = f"ensemble of {neurons} offset neurons over: {single.method}"
    best = None
    for spread in ENSEMBLE_SPREADS:
        offsets = np.linspace(-1, 1, neurons) * spread * span / 2
        z = np.concatenate([spike_matrix(x + o, thresholds, resets) for o in offsets], axis=1)
        weights = solve_weights(z, np.exp(x))
        meta = {**single.meta, "neurons": neurons, "offset_spread": spread, "single_neuron_rmse": single.rmse}
        candidate = scored(NeuronParams(thresholds, resets, weights, (lo, hi), offsets=offsets), method, meta)
        if best is None or candidate.rmse < best.rmse:
            best = candidate
    return best


def total_ticks(opts: FitOptions) -> int:
    return opts.restarts * opts.iterations + opts.polish_rounds
