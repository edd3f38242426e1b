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
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np

from sit_onnx.errors import SitOnnxError
from sit_onnx.neurons.objective import KL_WEIGHT, RowScore, RowScorer, RowSet, family_rows, least_squares_weights
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
    # "exp-rmse": the paper's protocol, (weighted) RMSE of exp on the range; "softmax": the polish
    # minimises the Spiking-Softmax error on rows of max-shifted logits (objective.py)
    objective: str = "exp-rmse"
    rows: RowSet | None = None  # softmax objective: the rows (None: the parametric family)
    warm_start: NeuronParams | None = None  # start the polish from this set's T and h, no exploration
    kl_weight: float = KL_WEIGHT  # softmax objective: the weight of the mean KL in the polished value
    hops: int = 0  # basin hops after the polish (hop_steps): a few steps moved at random, re-polished, kept if better


def spike_matrix(x: np.ndarray, thresholds: np.ndarray, resets: np.ndarray, out: np.ndarray | None = None):
    """Spike trains (len(x), K) as float64: the design matrix whose product with d is the output
    (written into `out`, a (len(x), >= K) array, when given: a polish makes thousands)."""
    v = x.astype(np.float64)  # always a copy: the membrane potential is drained in place
    thresholds, resets = np.asarray(thresholds, dtype=np.float64), np.asarray(resets, dtype=np.float64)
    z = np.empty((x.size, thresholds.size)) if out is None else out
    fired = np.empty(x.shape, dtype=bool)
    for t in range(thresholds.size):
        np.greater_equal(v, thresholds[t], out=fired)
        z[:, t] = fired
        np.subtract(v, resets[t], out=v, where=fired)
    return z


def solve_weights(z: np.ndarray, target: np.ndarray, ridge: float = 1e-9) -> np.ndarray:
    """Least-squares d for fixed spike trains (a small ridge keeps unused steps at 0). Spike trains
    alike in every column on tens of thousands of points can leave the ridged system singular in
    float64: the least-norm solution then."""
    gram = z.T @ z + ridge * np.eye(z.shape[1])
    try:
        return np.linalg.solve(gram, z.T @ target)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(gram, z.T @ target, rcond=None)[0]


class LeastSquaresTarget:
    """The stepped neuron's (weighted) RMSE against `target` on the points x, d (then the bias, if
    asked) solved exactly: what the exp-RMSE and activation fits polish. Built once per fit, so the
    thousands of evaluations reuse its work arrays (allocating them afresh each time kept the
    allocator returning pages to the system and faulting them in again: 2/3 of a fit's time)."""

    def __init__(self, x, target, steps: int, ridge: float = 1e-9, weight=None, bias: bool = False):
        self.x, self.ridge, self.steps = np.asarray(x, dtype=np.float64), ridge, steps
        self.w = np.ones_like(self.x) if weight is None else np.asarray(weight, dtype=np.float64)
        self.y = np.asarray(target, dtype=np.float64)
        self.wy = self.y * self.w
        self._z = np.ones((self.x.size, steps + bool(bias)))  # a bias column stays all ones
        self._zw, self._residual = np.empty_like(self._z), np.empty_like(self.x)

    def solve(self, thresholds, resets) -> tuple[float, np.ndarray]:
        """The RMSE and the d that reaches it."""
        if len(thresholds) != self.steps:  # the columns past K would act as extra bias columns
            raise ValueError(f"a set of K={len(thresholds)} on a target built for K={self.steps}")
        spike_matrix(self.x, thresholds, resets, out=self._z)
        zw = np.multiply(self._z, self.w[:, None], out=self._zw)
        d = solve_weights(zw, self.wy, self.ridge)
        residual = np.subtract(np.matmul(self._z, d, out=self._residual), self.y, out=self._residual)
        residual *= self.w
        return float(np.sqrt(np.mean(np.square(residual, out=residual)))), d

    def __call__(self, thresholds, resets) -> float:
        return self.solve(thresholds, resets)[0]


def true_rmse(x, target, thresholds, resets, ridge=1e-9, weight=None, bias=False) -> tuple[float, np.ndarray]:
    """The stepped neuron's (weighted) RMSE with d solved exactly, and that d (then the bias, if asked)."""
    return LeastSquaresTarget(x, target, len(thresholds), ridge, weight, bias).solve(thresholds, resets)


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


def _explore(x, target, opts: FitOptions, rng: np.random.Generator, tick: Callable[[], None], bias=False, weight=None):
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

    weight = point_weights(x, opts.weighting) if weight is None else weight
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(target * weight)
    wt = torch.as_tensor(weight)[:, None]
    eye = torch.eye(k + bias, dtype=torch.float64) * opts.ridge
    ones = torch.ones((x.size, 1), dtype=torch.float64)
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
            zmat = torch.stack(cols, dim=1)
            if bias:
                zmat = torch.cat([zmat, ones], dim=1)
            zmat = zmat * wt
            with torch.no_grad():
                d = torch.linalg.solve(zmat.T @ zmat + eye, zmat.T @ yt)
            loss = torch.mean((zmat @ d - yt) ** 2)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            if it % 100 == 99 or it == opts.iterations - 1:
                th, rs = thresholds.detach().numpy().copy(), resets.detach().numpy().copy()
                err, _ = true_rmse(x, target, th, rs, opts.ridge, weight, bias)
                if err < best[0]:
                    best = (err, th, rs)
            tick()
    return best


def polish_steps(evaluate: Callable[[np.ndarray, np.ndarray], float], thresholds, resets, span, rounds, tick):
    """Line search on one parameter at a time over a spread of offsets; shrink the spread when stuck.
    `evaluate(thresholds, resets)` is the true (stepped) error, d solved inside it."""
    best = evaluate(thresholds, resets)
    spread = 0.25 * span
    offsets = np.concatenate([-np.geomspace(1, 1e-3, 12), np.geomspace(1e-3, 1, 12)])
    for _ in range(rounds):
        improved = False
        for vec in (thresholds, resets):
            for i in range(vec.size):
                old = vec[i]
                best_value = old
                for offset in offsets * spread:
                    vec[i] = old + offset
                    err = evaluate(thresholds, resets)
                    if err < best - 1e-12:
                        best, best_value, improved = err, vec[i], True
                vec[i] = best_value
        tick()
        if not improved:
            spread /= 4
            if spread < 1e-6 * span:
                break
    return thresholds, resets


HOP_ROUNDS = 6  # polish rounds after each hop
HOP_SCALES = (0.006, 0.012, 0.025, 0.05)  # a moved threshold's offset (sd), as a fraction of the range


def hop_steps(evaluate, thresholds, resets, span, hops, seed, tick):
    """Basin hopping: the coordinate polish stops in the first local minimum it meets (measured: a
    K=20 GELU fit ended above K=16's). Each hop moves one to three thresholds (by a normal offset)
    or resets (by a log-normal factor), polishes briefly and keeps the result only if it is better,
    so the error never rises. Seeded."""
    if hops == 0:  # no evaluation either: one costs ~0.4 s on the softmax objective
        return thresholds, resets
    rng = np.random.default_rng(seed)
    best = evaluate(thresholds, resets)
    for _ in range(hops):
        moved_t, moved_h = thresholds.copy(), resets.copy()
        scale = rng.choice(HOP_SCALES)
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(0, thresholds.size)
            if rng.random() < 0.5:
                moved_t[i] += rng.normal(0, scale * span)
            else:
                moved_h[i] *= np.exp(rng.normal(0, 8 * scale))
        moved_t, moved_h = polish_steps(evaluate, moved_t, moved_h, span / 4, HOP_ROUNDS, lambda: None)
        value = evaluate(moved_t, moved_h)
        if value < best:
            best, thresholds, resets = value, moved_t, moved_h
        tick()
    return thresholds, resets


class SoftmaxTarget:
    """The softmax-aware objective on a range [LO, 0] (see `objective`): d is solved by least squares
    on the rows' elements gathered into a fine grid of the range (the neuron is constant between
    grid points but for breakpoints inside a cell, 1/20,000 of the range), the error is the true
    row score of the stepped neuron."""

    CELLS = 20_000
    TAIL_CELLS = 2_000

    def __init__(
        self, rows: RowSet, input_range: tuple[float, float], ridge: float = 1e-9, kl_weight: float = KL_WEIGHT
    ):
        lo, hi = input_range
        if hi != 0:
            raise SitOnnxError(f"--objective softmax fits the max-shift range [LO, 0]; got HI={hi:g}")
        self.rows, self.ridge, self.kl_weight = rows, ridge, kl_weight
        # the range in CELLS cells; below it (the neuron's tail, where rows still have elements) coarser
        tail = np.linspace(min(float(rows.x.min()), lo - 1.0), lo, self.TAIL_CELLS + 1)[:-1]
        self.grid = np.concatenate([tail, np.linspace(lo, 0.0, self.CELLS + 1)])
        # each element takes the neuron's value at the grid point at or below it
        self.cell = np.clip(np.searchsorted(self.grid, rows.x, side="right") - 1, 0, self.grid.size - 1)
        inside = rows.clipped(lo)
        w2 = least_squares_weights(rows, lo)[inside] ** 2
        weight2 = np.bincount(self.cell[inside], w2, minlength=self.grid.size)
        target = np.bincount(self.cell[inside], w2 * np.exp(rows.x[inside]), minlength=self.grid.size)
        used = weight2 > 0
        self.fit_x, self.fit_w = self.grid[used], np.sqrt(weight2[used])
        self.fit_target = target[used] / weight2[used]
        self.scorer, self._outputs = RowScorer(rows), np.empty_like(rows.x)

    def weights(self, thresholds, resets) -> np.ndarray:
        z = spike_matrix(self.fit_x, thresholds, resets)
        return solve_weights(z * self.fit_w[:, None], self.fit_target * self.fit_w, self.ridge)

    def row_score(self, thresholds, resets, weights=None) -> RowScore:
        d = self.weights(thresholds, resets) if weights is None else np.asarray(weights)
        on_grid = spike_matrix(self.grid, thresholds, resets) @ d
        return self.scorer(np.take(on_grid, self.cell, out=self._outputs))

    def __call__(self, thresholds, resets) -> float:
        return self.row_score(thresholds, resets).weighted(self.kl_weight)


MAX_FIT_HIGH = 80.0  # exp(80) = 5.5e34: the weights d(t) stay well inside float32, as the ops store them
MAX_FIT_WIDTH = 100.0  # K <= 64 steps cannot follow exp over more than this


def check_fit_range(input_range) -> tuple[float, float]:
    """The range a fit can serve: LO < HI, exp(HI) far inside float32, not wider than MAX_FIT_WIDTH."""
    lo, hi = (float(v) for v in input_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SitOnnxError(f"--range: need finite LO < HI, got {lo:g} {hi:g}")
    if hi > MAX_FIT_HIGH:
        raise SitOnnxError(f"--range: HI={hi:g} is too large: exp({hi:g}) overflows the float32 the ops compute in")
    check_fit_width(lo, hi)
    return lo, hi


def check_fit_width(lo: float, hi: float) -> None:
    """Exp's and the activations' fits alike: wider than MAX_FIT_WIDTH, the grid's points lie too far apart."""
    if hi - lo > MAX_FIT_WIDTH:
        raise SitOnnxError(f"--range: {lo:g}..{hi:g} is wider than {MAX_FIT_WIDTH:g}; fit a narrower range")


OBJECTIVES = ("exp-rmse", "softmax")


def fit_si_exp(opts: FitOptions, progress: Callable[[int], None] | None = None) -> NeuronParams:
    """Fit one SI-exp neuron on `opts.input_range`, to exp or to softmax rows; seeded and reproducible."""
    lo, hi = check_fit_range(opts.input_range)
    if opts.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {opts.objective!r}; known: {', '.join(OBJECTIVES)}")
    target = (
        SoftmaxTarget(opts.rows or family_rows(opts.seed), (lo, hi), opts.ridge, opts.kl_weight)
        if opts.objective == "softmax"
        else None
    )
    tick = (lambda: progress(1)) if progress else (lambda: None)
    x = np.linspace(lo, hi, GRID_POINTS)
    if opts.warm_start is not None:
        thresholds, resets = _warm(opts)
    elif target is not None:
        thresholds, resets = _softmax_start(target, opts, tick)
    else:
        thresholds, resets = explore_start(x, opts, tick)
    weight = point_weights(x, opts.weighting)
    evaluate = LeastSquaresTarget(x, np.exp(x), opts.steps, opts.ridge, weight) if target is None else target
    thresholds, resets = polish_steps(evaluate, thresholds, resets, hi - lo, opts.polish_rounds, tick)
    thresholds, resets = hop_steps(evaluate, thresholds, resets, hi - lo, opts.hops, opts.seed, tick)
    if target is None:
        _, weights = evaluate.solve(thresholds, resets)
    else:
        weights = target.weights(thresholds, resets)
    meta = {
        "seed": opts.seed,
        "objective": opts.objective,
        "init": "warm start" if opts.warm_start is not None else opts.init,
        "weighting": opts.weighting,
        "restarts": opts.restarts,
        "iterations": opts.iterations,
        "polish_rounds": opts.polish_rounds,
        "hops": opts.hops,
        "surrogate_width": opts.surrogate_width,
        "grid_points": GRID_POINTS,
    }
    if target is not None:
        meta.update(rows=target.rows.source, kl_weight=opts.kl_weight)
        meta.update(_row_figures(target.row_score(thresholds, resets, weights)))
    return scored(NeuronParams(thresholds, resets, weights, (lo, hi)), method=_method(opts), meta=meta)


def _method(opts: FitOptions) -> str:
    start = "warm start" if opts.warm_start is not None else "surrogate-gradient explore"
    hops = f" + {opts.hops} basin hops" if opts.hops else ""
    if opts.objective == "softmax":
        kl = f" + {opts.kl_weight:g} KL"
        return f"{start} + coordinate polish of the softmax row error (L1 + worst weight{kl}){hops}, least-squares d"
    return f"{start} + least-squares d + coordinate polish{hops}"


def _row_figures(row_score: RowScore) -> dict:
    return {f"row_{key}": value for key, value in asdict(row_score).items()}


def _warm(opts: FitOptions) -> tuple[np.ndarray, np.ndarray]:
    start = opts.warm_start
    if start.steps != opts.steps or start.neurons != 1:
        raise SitOnnxError(
            f"warm start: the set has K={start.steps}{f' x {start.neurons} neurons' if start.neurons > 1 else ''}; "
            f"need one neuron of K={opts.steps}"
        )
    return np.array(start.thresholds), np.array(start.resets)


SOFTMAX_START_SPANS = (1.0, 2 / 3, 1 / 2)  # explore exp on [LO * s, 0]: softmax rows favour the top of the range
SOFTMAX_START_ROUNDS = 4


def _softmax_start(target: SoftmaxTarget, opts: FitOptions, tick) -> tuple[np.ndarray, np.ndarray]:
    """The softmax objective's landscape is rugged (measured: polishing from different exp fits
    ends 2x apart), so explore exp on a few ranges [LO*s, 0], polish each briefly on the rows,
    and keep the best."""
    lo = opts.input_range[0]
    best = (np.inf, None, None)
    for share in SOFTMAX_START_SPANS:
        narrowed = replace(opts, input_range=(lo * share, 0.0))
        thresholds, resets = explore_start(np.linspace(lo * share, 0.0, GRID_POINTS), narrowed, tick)
        thresholds, resets = polish_steps(target, thresholds, resets, -lo, SOFTMAX_START_ROUNDS, lambda: None)
        value = target(thresholds, resets)
        if value < best[0]:
            best = (value, thresholds, resets)
    return best[1], best[2]


def explore_start(x: np.ndarray, opts: FitOptions, tick, target=None, bias=False, weight=None):
    """The surrogate-gradient phase on the (weighted) RMSE of `target` (default exp, also for the
    softmax objective: its weights span orders of magnitude, which the surrogate does not survive)."""
    import torch

    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 10,000 x K tensors: threads only add overhead (and oversubscribe parallel fits)
    try:
        _, thresholds, resets = _explore(x, np.exp(x) if target is None else target, opts, rng, tick, bias, weight)
    finally:
        torch.set_num_threads(threads)
    return thresholds, resets


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
    explore = 0 if opts.warm_start is not None else opts.restarts * opts.iterations
    if opts.warm_start is None and opts.objective == "softmax":
        explore *= len(SOFTMAX_START_SPANS)
    return explore + opts.polish_rounds + opts.hops
