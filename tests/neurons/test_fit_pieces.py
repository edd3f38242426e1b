"""Pieces of the fitter with exact answers: weighted RMSE, ensembles' offsets and records, the
starts' shapes and ranges, the refusals."""

import numpy as np
import pytest

from sit_onnx.neurons.fit import (
    ENSEMBLE_SPREADS,
    GRID_POINTS,
    FitOptions,
    LeastSquaresTarget,
    _initial,
    fit_ensemble,
    solve_weights,
    spike_matrix,
    true_rmse,
)
from sit_onnx.neurons.params import PAPER_RANGE, NeuronParams, shipped_params
from sit_onnx.neurons.quality import exp_quality


def test_true_rmse_weights_the_residual_and_solves_d_on_the_weighted_problem():
    params = shipped_params(4, PAPER_RANGE)
    x = np.linspace(-1, 1, 400)
    w = np.linspace(0.5, 2.0, 400)
    rmse, d = true_rmse(x, np.exp(x), params.thresholds, params.resets, 1e-9, w)
    z = spike_matrix(x, params.thresholds, params.resets)
    want_d = solve_weights(z * w[:, None], np.exp(x) * w, 1e-9)
    np.testing.assert_allclose(d, want_d, rtol=1e-12)
    assert rmse == pytest.approx(np.sqrt(np.mean((w * (z @ want_d - np.exp(x))) ** 2)), rel=1e-12)
    plain, plain_d = true_rmse(x, np.exp(x), params.thresholds, params.resets)
    assert plain == pytest.approx(np.sqrt(np.mean((z @ plain_d - np.exp(x)) ** 2))) and plain != rmse


def test_a_reused_least_squares_target_answers_every_set_as_a_fresh_solve():
    """A polish evaluates thousands of sets on one target, whose work arrays must carry nothing
    from one set to the next; with a bias, its column of ones must survive every set."""
    params = shipped_params(4, PAPER_RANGE)
    x = np.linspace(-4, 4, 500)
    y, w = np.tanh(x), np.linspace(0.2, 1.0, 500)
    target = LeastSquaresTarget(x, y, 4, 1e-9, w, bias=True)
    first = (np.array(params.thresholds), np.array(params.resets))
    second = (first[0] - 0.3, first[1] * 1.5)
    answers = []
    for th, rs in (first, second, first):
        rmse, d = target.solve(th, rs)
        z = np.column_stack([spike_matrix(x, th, rs), np.ones(x.size)])  # the bias column
        want_d = solve_weights(z * w[:, None], y * w, 1e-9)
        np.testing.assert_allclose(d, want_d, rtol=1e-10)
        assert rmse == pytest.approx(np.sqrt(np.mean((w * (z @ want_d - y)) ** 2)), rel=1e-10)
        assert target(th, rs) == rmse
        answers.append(rmse)
    assert answers[0] == answers[2] != answers[1]
    with pytest.raises(ValueError, match="K=3 on a target built for K=4"):
        target.solve(first[0][:3], first[1][:3])


def test_spike_matrix_writes_into_out_and_leaves_the_input_alone():
    params = shipped_params(4, PAPER_RANGE)
    x = np.linspace(-1, 1, 50)
    kept = x.copy()
    out = np.full((50, 6), 7.0)
    z = spike_matrix(x, params.thresholds, params.resets, out=out)
    assert z is out and np.array_equal(x, kept)  # the membrane drains a copy of x
    np.testing.assert_array_equal(out[:, :4], spike_matrix(x, params.thresholds, params.resets))
    assert (out[:, 4:] == 7.0).all() and 0 < out[:, :4].sum() < out[:, :4].size


def test_ensemble_offsets_span_the_chosen_spread_and_the_record_says_so():
    single = shipped_params(4, PAPER_RANGE)
    ensemble = fit_ensemble(single, 3)
    spread = ensemble.meta["offset_spread"]
    assert spread in ENSEMBLE_SPREADS
    np.testing.assert_allclose(ensemble.offsets, [-spread, 0.0, spread])  # range 2: half-width = spread
    assert ensemble.meta["neurons"] == 3 and ensemble.meta["single_neuron_rmse"] == single.rmse
    assert ensemble.method == f"ensemble of 3 offset neurons over: {single.method}"
    assert ensemble.rmse < single.rmse
    others = []
    for s in ENSEMBLE_SPREADS:  # the spread kept is the one with the lowest error on random points
        offsets = np.linspace(-1, 1, 3) * s
        x = np.linspace(-1, 1, GRID_POINTS)
        z = np.concatenate([spike_matrix(x + o, single.thresholds, single.resets) for o in offsets], axis=1)
        weights = solve_weights(z, np.exp(x))
        candidate = NeuronParams(single.thresholds, single.resets, weights, PAPER_RANGE, offsets=offsets)
        others.append(exp_quality(candidate).rmse)
    assert ENSEMBLE_SPREADS[int(np.argmin(others))] == spread and min(others) == pytest.approx(ensemble.rmse)
    assert fit_ensemble(single, 1) is single


@pytest.mark.parametrize("init", ["spread", "random"])
def test_starts_lie_in_the_range_with_positive_resets(init):
    opts = FitOptions(steps=6, input_range=(-12.0, 0.0), init=init)
    thresholds, resets = _initial(opts, np.random.default_rng(0))
    assert thresholds.shape == resets.shape == (6,)
    assert np.all(np.diff(thresholds) <= 0.2) and thresholds.max() <= 0.2 and thresholds.min() >= -12.2
    assert np.all(resets > 0) and resets.max() <= 12 * 0.6 + 1e-9
    if init == "random":
        assert np.all(np.diff(thresholds) <= 0) and resets.min() >= 12 * 0.05  # sorted, from the top down
        assert np.ptp(thresholds) > 4  # spread over the range, not bunched
    else:
        np.testing.assert_allclose(thresholds, np.linspace(0, -12, 6), atol=0.12 * 3)
        np.testing.assert_allclose(resets, 1.0, rtol=0.5)  # span / 2K times U(0.5, 1.5)
    with pytest.raises(ValueError, match=r"^unknown init 'grid'; known: spread, random$"):
        _initial(FitOptions(init="grid"), np.random.default_rng(0))


def test_softmax_target_grid_solves_the_element_wise_least_squares():
    """Gathering elements into grid cells changes nothing but where the neuron is read: d equals the
    element-wise weighted least squares with each element's spike train taken at its cell's point."""
    from sit_onnx.neurons.fit import SoftmaxTarget
    from sit_onnx.neurons.objective import least_squares_weights, rows_from_logits
    from sit_onnx.neurons.params import SHIFT_RANGE

    rows = rows_from_logits(np.random.default_rng(9).normal(0, 6, (300, 24)), -1)
    target = SoftmaxTarget(rows, SHIFT_RANGE)
    lo = SHIFT_RANGE[0]
    cell_points = target.grid[target.cell]
    fine = rows.x >= lo  # [LO, 0] in CELLS cells; the tail below it in TAIL_CELLS coarser ones
    assert np.all(cell_points <= rows.x) and np.all((rows.x - cell_points)[fine] < 12 / SoftmaxTarget.CELLS + 1e-12)
    tail_width = (lo - min(rows.x.min(), lo - 1.0)) / SoftmaxTarget.TAIL_CELLS
    assert np.all((rows.x - cell_points)[~fine] < tail_width + 1e-9) and (~fine).any()
    assert target.grid[0] == min(rows.x.min(), lo - 1.0)  # the tail reaches the lowest element
    params = shipped_params(8, SHIFT_RANGE)
    inside = rows.clipped(lo)
    w = least_squares_weights(rows, lo)[inside]
    z = spike_matrix(cell_points[inside], params.thresholds, params.resets)
    want = solve_weights(z * w[:, None], np.exp(rows.x[inside]) * w)
    np.testing.assert_allclose(target.weights(params.thresholds, params.resets), want, rtol=1e-6, atol=1e-9)
    narrow = SoftmaxTarget(rows_from_logits(np.random.default_rng(1).normal(0, 1, (50, 8)), -1), SHIFT_RANGE)
    assert narrow.grid[0] == lo - 1.0 and narrow.grid.size == SoftmaxTarget.TAIL_CELLS + SoftmaxTarget.CELLS + 1


def _gelu_rmse():
    from sit_onnx.neurons.activation import _gelu

    x = np.linspace(-4, 4, 600)
    return lambda th, rs: true_rmse(x, _gelu(x), th, rs, bias=True)[0]


def test_basin_hops_never_raise_the_error_are_seeded_and_leave_the_start_alone():
    from sit_onnx.neurons.fit import hop_steps

    evaluate = _gelu_rmse()
    start_t, start_h = np.linspace(3.5, -3.5, 6), np.full(6, 1.0)  # a poor start: evenly spread, equal resets
    before = evaluate(start_t, start_h)
    ticks = []
    th, rs = hop_steps(evaluate, start_t.copy(), start_h.copy(), 8.0, 12, 3, lambda: ticks.append(1))
    after = evaluate(th, rs)
    assert after < 0.9 * before and len(ticks) == 12
    again = hop_steps(evaluate, start_t.copy(), start_h.copy(), 8.0, 12, 3, lambda: None)
    np.testing.assert_array_equal(again[0], th)
    np.testing.assert_array_equal(again[1], rs)
    other = hop_steps(evaluate, start_t.copy(), start_h.copy(), 8.0, 12, 4, lambda: None)
    assert not np.array_equal(other[0], th) and evaluate(*other) < before
    untouched = hop_steps(evaluate, start_t.copy(), start_h.copy(), 8.0, 0, 3, lambda: None)
    np.testing.assert_array_equal(untouched[0], start_t)
    np.testing.assert_array_equal(untouched[1], start_h)


def test_hops_reach_both_fits_and_their_records():
    """FitOptions.hops (exp) and fit_activation's hops: the error falls below the same fit's without
    hops, and the set's method and meta say how many."""
    from dataclasses import replace

    from sit_onnx.neurons.activation import fit_activation, shipped_activation
    from sit_onnx.neurons.fit import fit_si_exp

    shipped = shipped_params(4, PAPER_RANGE)
    poor = replace(shipped, thresholds=tuple(np.linspace(0.9, -0.9, 4)), resets=(0.5, 0.5, 0.5, 0.5))
    base = FitOptions(steps=4, input_range=PAPER_RANGE, warm_start=poor, polish_rounds=1)
    plain, hopped = fit_si_exp(base), fit_si_exp(replace(base, hops=8))
    assert hopped.rmse < plain.rmse and hopped.meta["hops"] == 8 and plain.meta["hops"] == 0
    assert hopped.method.endswith("coordinate polish + 8 basin hops") and "hops" not in plain.method
    reseeded = fit_si_exp(replace(base, hops=8, seed=1))  # the hops follow the fit's seed
    assert reseeded.thresholds != hopped.thresholds and reseeded.rmse < plain.rmse
    start = shipped_activation("tanh", 8)
    polished = fit_activation("tanh", 8, warm_start=start, polish_rounds=0)
    hopped = fit_activation("tanh", 8, warm_start=start, polish_rounds=0, hops=4)
    assert hopped.neuron.rmse < polished.neuron.rmse and hopped.neuron.meta["hops"] == 4
    assert hopped.neuron.method == "warm start + coordinate polish + 4 basin hops"
    reseeded = fit_activation("tanh", 8, seed=1, warm_start=start, polish_rounds=0, hops=4)
    assert reseeded.neuron.thresholds != hopped.neuron.thresholds


def test_fit_bench_runs_and_prints_a_ratio_per_objective():
    """bench/fit.py is the speed record of the reused work arrays; it must keep running."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "fit.py"), "--repeat", "2"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.rstrip().endswith("x")]
    assert [r.split("  ")[0] for r in rows] == [
        "exp RMSE on [-1, 1]",
        "GELU, weighted, with bias",
        "softmax rows (the family)",
    ]
    assert all(float(r.split()[-1].rstrip("x")) > 0 for r in rows)


def test_identical_spike_trains_of_huge_weight_still_solve():
    """Three steps firing alike, weighted by 1e20 (a gate's |x| weighting on a range of 1e20): the
    ridge is lost in the Gram matrix, which numpy's solve calls singular; the least-norm d fits."""
    z = np.full((4, 3), 1e20)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.solve(z.T @ z + 1e-9 * np.eye(3), z.T @ np.ones(4))
    d = solve_weights(z, np.full(4, 3e20))
    np.testing.assert_allclose(d, [1.0, 1.0, 1.0], rtol=1e-9)
