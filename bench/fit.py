"""The fitter's inner loop: one evaluation of a candidate (T, h), with the work arrays made once
per fit (what `neuron fit`, `--hops` and `rewrite --calibrate` do) against made afresh for each
evaluation (what they did before), measured in the same run.

A polish makes thousands of evaluations on arrays of 10^4-10^5 elements; allocating those afresh
each time kept glibc's allocator returning pages to the system and faulting them in again. Prints
milliseconds per evaluation, the share of it spent in the kernel, and the ratio fresh/reused
(goal: >= 1.5 on Linux for the exp-RMSE and softmax objectives; the GELU fit's smaller arrays
did not churn, so it gains only the allocations).

    python bench/fit.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sit_onnx.neurons.activation import activation_function, sample_weights, shipped_activation  # noqa: E402
from sit_onnx.neurons.fit import GRID_POINTS, LeastSquaresTarget, SoftmaxTarget, spike_matrix  # noqa: E402
from sit_onnx.neurons.objective import family_rows, score  # noqa: E402
from sit_onnx.neurons.params import PAPER_RANGE, SHIFT_RANGE, shipped_params  # noqa: E402


def timed(evaluate, candidates, repeat):
    """Milliseconds per evaluation and the kernel's share of the time."""
    start, cpu = time.perf_counter(), os.times()
    for i in range(repeat):
        evaluate(*candidates[i % len(candidates)])
    end, after = time.perf_counter(), os.times()
    return 1e3 * (end - start) / repeat, (after.system - cpu.system) / max(end - start, 1e-9)


def jittered(thresholds, resets, span, count=16, seed=0):
    """Candidates like a polish's: the set with one step moved a little."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        th, rs = np.array(thresholds), np.array(resets)
        th[rng.integers(th.size)] += rng.normal(0, 0.01 * span)
        out.append((th, rs))
    return out


def cases():
    """(name, reused evaluate, fresh evaluate, candidates) per objective, at K=12."""
    exp = shipped_params(12, PAPER_RANGE)
    x = np.linspace(*PAPER_RANGE, GRID_POINTS)
    reused_exp = LeastSquaresTarget(x, np.exp(x), 12)
    yield "exp RMSE on [-1, 1]", reused_exp, lambda th, rs: LeastSquaresTarget(x, np.exp(x), 12)(th, rs), exp

    gelu = shipped_activation("gelu", 12)
    gx = np.linspace(*gelu.neuron.input_range, GRID_POINTS)
    weight = sample_weights(gx, np.random.default_rng(0).normal(-1.2, 1.25, 200_000))  # BERT-like FFN inputs
    exact = activation_function("gelu").exact(gx)
    reused = LeastSquaresTarget(gx, exact, 12, weight=weight, bias=True)
    fresh = lambda th, rs: LeastSquaresTarget(gx, exact, 12, weight=weight, bias=True)(th, rs)  # noqa: E731
    yield "GELU, weighted, with bias", reused, fresh, gelu.neuron

    target = SoftmaxTarget(family_rows(0), SHIFT_RANGE)

    def fresh_softmax(th, rs):  # the old row_score: every work array of the rows made afresh
        d = target.weights(th, rs)
        return score(target.rows, (spike_matrix(target.grid, th, rs) @ d)[target.cell]).value

    yield "softmax rows (the family)", target, fresh_softmax, shipped_params(12, SHIFT_RANGE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(f"{'objective':28} {'fresh ms':>9} {'kernel':>7} {'reused ms':>10} {'kernel':>7} {'fresh/reused':>13}")
    for name, reused, fresh, params in cases():
        lo, hi = params.input_range
        candidates = jittered(params.thresholds, params.resets, hi - lo)
        for evaluate in (fresh, reused):  # warm both paths up before timing
            timed(evaluate, candidates, 4)
        fresh_ms, fresh_sys = timed(fresh, candidates, args.repeat)
        reused_ms, reused_sys = timed(reused, candidates, args.repeat)
        print(
            f"{name:28} {fresh_ms:9.2f} {fresh_sys:7.0%} {reused_ms:10.2f} {reused_sys:7.0%} "
            f"{fresh_ms / reused_ms:12.2f}x"
        )


if __name__ == "__main__":
    main()
