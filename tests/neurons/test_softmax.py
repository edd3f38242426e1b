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
