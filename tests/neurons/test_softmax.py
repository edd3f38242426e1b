import numpy as np
import pytest

from sit_onnx.neurons import SoftmaxOptions, shipped_params, si_exp, si_norm, softmax, spiking_softmax
from sit_onnx.neurons.params import PAPER_RANGE, SHIFT_RANGE
from sit_onnx.neurons.quality import softmax_quality


def test_composes_si_exp_then_si_norm(tiny_params, rng):
    x = rng.uniform(-1, 1, (4, 6))
    expected = si_norm(si_exp(x, tiny_params), axis=0)
    np.testing.assert_array_equal(spiking_softmax(x, tiny_params, axis=0), expected)


def test_sigmoid_then_shift_order(tiny_params, rng):
    x = rng.normal(0, 3, (3, 5)).astype(np.float32)
    s = (1 / (1 + np.exp(-x))).astype(np.float32)
    expected = si_norm(si_exp(s - s.max(axis=-1, keepdims=True), tiny_params))
    got = spiking_softmax(x, tiny_params, options=SoftmaxOptions(sigmoid=True, shift=True))
    np.testing.assert_allclose(got, expected, atol=1e-7)


def test_rows_sum_to_one_in_amplified_mode(rng):
    params = shipped_params(12, PAPER_RANGE)
    out = spiking_softmax(rng.uniform(-1, 1, (20, 16)), params)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-12)


def test_shift_makes_large_logits_convertible(rng):
    x = rng.normal(0, 3, (200, 64)) + 30  # far outside [-1, 1]: paper mode cannot follow
    params = shipped_params(12, SHIFT_RANGE)
    shifted = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    assert np.mean(np.abs(shifted - softmax(x))) < 5e-3


def test_attention_mask_values():
    params = shipped_params(12, SHIFT_RANGE)
    x = np.array([[0.0, 1.0, -3.4e38, -np.inf], [-3.4e38] * 4], dtype=np.float32)
    out = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    assert out[0, 2] == 0 and out[0, 3] == 0
    assert out[0, :2].sum() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(out[1], 0.25, atol=1e-6)  # a fully masked row: uniform, like softmax


def test_fully_minus_inf_row_is_nan_like_softmax():
    params = shipped_params(12, SHIFT_RANGE)
    out = spiking_softmax(np.full((1, 3), -np.inf, dtype=np.float32), params, options=SoftmaxOptions(shift=True))
    assert np.all(np.isnan(out))


def test_paper_protocol_error_matches_reference_figures():
    # shared/neuron-fit-reference.md: a good K=12 fit gives KL ~1e-4, MAE 6.4e-4 at n=16
    q = softmax_quality(shipped_params(12, PAPER_RANGE), 16, "paper", vectors=500)
    assert q.kl < 3e-4 and q.mae < 1.5e-3


def test_plain_softmax_computes_in_float64():
    """The baseline every error is measured against: float64 whatever the logits' type."""
    got = softmax(np.array([[0, 1, 2]], np.float32))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.exp([[0, 1, 2]]) / np.exp([0, 1, 2]).sum())


def test_float32_and_float16_rows_are_shifted_in_float32():
    """`x - max` is rounded to float32 as the kernels round it: -2**-24 - 1 is -1 in float32, on
    the one threshold (-1), so both logits fire; in float64 it falls just short and the row is
    one-hot. The output keeps the input's dtype."""
    from sit_onnx.neurons import NeuronParams

    params = NeuronParams([-1.0], [1.0], [1.0], (-12, 0))
    row = [1.0, -(2**-24)]
    for dtype in (np.float32, np.float16):
        q = spiking_softmax(np.array([row], dtype), params, options=SoftmaxOptions(shift=True))
        assert q.dtype == dtype and q.tolist() == [[0.5, 0.5]]
    q = spiking_softmax(np.array([row], np.float64), params, options=SoftmaxOptions(shift=True))
    assert q.dtype == np.float64 and q.tolist() == [[1.0, 0.0]]


def test_time_steps_count_whole_spikes(rng):
    """SI-norm's spike count: each weight is floor(N * w / V_th) / N, so a multiple of 1/N at or
    below the amplified form's value."""
    params = shipped_params(12, SHIFT_RANGE)
    x = rng.normal(0, 2, (6, 9)).astype(np.float32)
    amplified = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    counted = spiking_softmax(x, params, options=SoftmaxOptions(shift=True, time_steps=8))
    assert counted.dtype == np.float32
    np.testing.assert_array_equal(counted * 8, np.floor(counted * 8))
    assert (counted <= amplified + 1e-7).all() and (amplified - counted < 1 / 8 + 1e-6).all()
    assert not np.array_equal(counted, amplified)


def test_an_empty_softmax_axis_gives_an_empty_result():
    out = spiking_softmax(
        np.zeros((2, 0), np.float32), shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(shift=True)
    )
    assert out.shape == (2, 0) and out.dtype == np.float32


def test_overflowing_sigmoid_and_infinite_rows_raise_no_warnings():
    """exp(3.4e38) inside the Sigmoid and inf - inf in the shift are defined (0 and NaN), not
    warnings a `-W error` run turns into failures."""
    from tests.helpers import warnings_fail

    x = np.array([[-3.4e38, 0.0, 1.0], [np.inf, np.inf, 0.0]], np.float32)
    with warnings_fail():
        out = spiking_softmax(x, shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(sigmoid=True, shift=True))
        shifted = spiking_softmax(x, shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    assert np.isfinite(out).all() and np.isnan(shifted[1]).all()
