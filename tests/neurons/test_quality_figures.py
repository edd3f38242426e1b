"""The reported figures of a parameter set, worked out by hand or from their definitions."""

import warnings

import numpy as np
import pytest

from sit_onnx.neurons.params import PAPER_RANGE, SHIFT_RANGE, shipped_params
from sit_onnx.neurons.quality import as_dict, exp_quality, mean_kl, softmax_error, softmax_quality
from sit_onnx.neurons.si_exp import si_exp
from sit_onnx.neurons.softmax import SoftmaxOptions, softmax, spiking_softmax
from sit_onnx.neurons.sweep import SWEEP_LENGTHS, sweep


def test_mean_kl_by_hand_zero_weights_and_floor():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = np.array([[0.25, 0.75, 0.3], [0.0, 1.0, 0.0]])
    with warnings.catch_warnings(), np.errstate(all="warn"):
        warnings.simplefilter("error")  # log(0) of a zero weight is expected and kept quiet
        kl = mean_kl(p, q)
    first = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)  # p = 0 adds nothing
    second = np.log(1 / 1e-12)  # a q of 0 (no spike) counts as 1e-12
    assert kl == pytest.approx((first + second) / 2)
    assert mean_kl(p.T, q.T, axis=0) == pytest.approx(kl)  # rows along the given axis
    assert mean_kl(p, p) == 0.0


def test_softmax_error_figures():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    q = np.array([[0.4, 0.6], [0.9, 0.1]])
    result = softmax_error(p, q, 2, "paper")
    assert (result.length, result.protocol) == (2, "paper")
    assert result.mae == pytest.approx(0.05) and result.mse == pytest.approx(0.005)
    assert result.max_error == pytest.approx(0.1) and result.kl == pytest.approx(mean_kl(p, q))


@pytest.mark.parametrize("protocol", ["paper", "max-shift"])
def test_softmax_quality_follows_its_protocol(protocol):
    params = shipped_params(8, (-1, 1) if protocol == "paper" else (-12, 0))
    rng = np.random.default_rng(7)  # the default seed, 2000 rows by default
    x = rng.uniform(-1, 1, (2000, 16)) if protocol == "paper" else rng.normal(0, 3, (2000, 16))
    q = spiking_softmax(x, params, axis=-1, options=SoftmaxOptions(shift=protocol == "max-shift"))
    want = softmax_error(softmax(x), q, 16, protocol)
    assert softmax_quality(params, 16, protocol) == want


def test_unknown_protocol_names_the_known_ones():
    with pytest.raises(ValueError, match=r"^unknown protocol 'none'; known: paper, max-shift$"):
        softmax_quality(shipped_params(8, (-1, 1)), 4, "none")


def test_exp_quality_and_its_dict():
    params = shipped_params(12, (-1, 1))
    quality = exp_quality(params, points=5000, seed=3)
    x = np.random.default_rng(3).uniform(-1, 1, 5000)
    record = as_dict(quality)
    assert record["range"] == [-1.0, 1.0] and isinstance(record["range"], list) and record["points"] == 5000
    out, spikes = si_exp(x, params, return_spikes=True)
    assert record["steps"] == 12 and record["rmse"] == pytest.approx(np.sqrt(np.mean((out - np.exp(x)) ** 2)))
    assert record["max_error"] == pytest.approx(np.abs(out - np.exp(x)).max()) and record["max_error"] < 0.05
    assert record["mean_spikes"] == pytest.approx(spikes.sum(axis=-1).mean()) and 1 < record["mean_spikes"] < 12


def test_a_sweep_row_scores_each_shipped_set_under_its_own_protocol():
    """Figure 7's rows: the paper's set on [-1, 1] and the max-shift set, each scored by its own
    protocol on `vectors` rows, one progress tick per K."""
    ticks = []
    rows = sweep(steps=[4, 6], vectors=40, progress=ticks.append)
    assert ticks == [1, 1] and [r["steps"] for r in rows] == [4, 6]
    paper, shifted = shipped_params(6, PAPER_RANGE), shipped_params(6, SHIFT_RANGE)
    row = rows[1]
    assert row["si_exp"] == as_dict(exp_quality(paper)) and row["si_exp_shift"] == as_dict(exp_quality(shifted))
    want = [as_dict(softmax_quality(paper, n, "paper", 40)) for n in SWEEP_LENGTHS]
    want += [as_dict(softmax_quality(shifted, n, "max-shift", 40)) for n in SWEEP_LENGTHS]
    assert row["softmax"] == want
    assert row["softmax"][0] != as_dict(softmax_quality(paper, SWEEP_LENGTHS[0], "paper"))  # 40 rows, not 2000


def test_every_shipped_set_records_the_figures_exp_quality_measures():
    """A shipped file's rmse and max_error are exp_quality's default protocol (100,000 seeded
    points on its range), figure for figure: what `neuron show` prints for it is what it says."""
    from sit_onnx.neurons.params import OBJECTIVES, PAPER_RANGE, SHIFT_RANGE, SHIPPED_STEPS
    from sit_onnx.neurons.quality import EVAL_POINTS

    checked = 0
    for objective in OBJECTIVES:
        for input_range in (PAPER_RANGE, SHIFT_RANGE):
            if objective == "softmax" and input_range == PAPER_RANGE:
                continue
            for k in SHIPPED_STEPS:
                params = shipped_params(k, input_range, objective)
                quality = exp_quality(params)
                assert (quality.rmse, quality.max_error, quality.points) == (params.rmse, params.max_error, EVAL_POINTS)
                checked += 1
    assert checked == 21
