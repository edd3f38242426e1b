"""The CUDA kernels themselves against the numpy reference, through the test harness
(tests/cuda_harness.py): runs on any CUDA machine with torch, with or without onnxruntime-gpu.
The same kernels behind onnxruntime's CUDA provider are tested in test_kernels.py.

Outputs start NaN-filled (an element a kernel forgets stays NaN and fails); SI-norm's spike
counts use N large enough that the expected rates are mostly non-zero, and a row may differ from
the reference by at most one spike in at most two places (the row sum's order differs from
numpy's, and floor() can move across it)."""

from types import SimpleNamespace

import numpy as np
import pytest

from sit_onnx.neurons import SoftmaxOptions, si_exp, si_norm, spiking_softmax
from tests.cuda_harness import Harness, unavailable_reason
from tests.helpers import random_params

REASON = unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
DTYPES = [np.float32, np.float16]
SPIKES = 1 << 20  # SI-norm's N: rates of 1/n for n up to 3000 stay far from zero
# Row lengths around every boundary of the launchers: warp slots (32, 64, ..., 1024), the
# block kernel beyond 1024, a vector tail.
EDGE_LENGTHS = [1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 3001]


@pytest.fixture(scope="module")
def harness():
    return Harness()


def _cuda(array):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).cuda()


def _host(tensor):
    return tensor.cpu().numpy()


def assert_rates_close(got, expected, axis, time_steps, dtype):
    """Equal to the reference within the dtype's rounding; with N spikes, at most two places per
    row may differ by one spike (1/N). NaN where the reference has NaN, nowhere else."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    assert np.array_equal(np.isnan(got), np.isnan(expected)), "NaN where the reference has none (or vice versa)"
    finite = ~np.isnan(expected)
    rtol = 1e-5 if dtype == np.float32 else 2e-3
    magnitude = np.where(finite, np.abs(expected), 0)
    error = np.where(finite, np.abs(got - expected), 0)
    bound = rtol * magnitude + (1.0 / time_steps if time_steps else 1e-7)
    assert np.all(error <= bound), f"max error {error.max():.3g} over {int((error > bound).sum())} elements"
    if time_steps and got.size:  # floor() flips where N*w/V_th lands within rounding of an integer: rare
        flips = np.sum(error > rtol * magnitude + 1e-7, axis=axis)
        allowed = 2 + got.shape[axis] // 100
        assert flips.max() <= allowed, f"{flips.max()} spike counts differ in one row of {got.shape[axis]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 4, 5, 12, 13, 17, 33, 64])  # every padded size K is compiled for
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5, 11), (2, 1, 40000), (8, 12, 197, 197)], ids=str)
def test_si_exp_is_the_reference(harness, rng, dtype, steps, shape):
    params = random_params(rng, steps)
    x = rng.uniform(-10, 3, shape).astype(dtype)
    got = _host(harness.exp(_cuda(x), params))
    expected = si_exp(x, params)
    np.testing.assert_array_equal(got, expected)  # exact: same float32 steps, same rounding
    if x.size >= 1000:  # not an all-zero comparison (thresholds lie in [-8, 1], x in [-10, 3])
        assert np.count_nonzero(expected) > x.size // 10


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_si_exp_unaligned_and_tails(harness, rng, offset):
    """A view starting mid-vector takes the element-wise path; lengths not a multiple of 4 end in a tail."""
    params = random_params(rng, 12)
    x = rng.uniform(-10, 3, 1000 + offset).astype(np.float32)
    got = _host(harness.exp(_cuda(x)[offset:], params))
    np.testing.assert_array_equal(got, si_exp(x[offset:], params))


def test_si_exp_edge_values(harness, rng):
    params = random_params(rng, 12)
    x = np.array([np.nan, np.inf, -np.inf, -3.4e38, 3.4e38, 0.0, params.thresholds[3]], dtype=np.float32)
    np.testing.assert_array_equal(_host(harness.exp(_cuda(x), params)), si_exp(x, params))


def test_si_exp_threshold_is_reached_at_equality(harness):
    params = SimpleNamespace(thresholds=[0.5], resets=[1.0], weights=[2.0], steps=1)
    got = _host(harness.exp(_cuda(np.array([0.5, np.nextafter(np.float32(0.5), np.float32(0))], np.float32)), params))
    np.testing.assert_array_equal(got, [2.0, 0.0])


NORM_CASES = [
    ((5,), 0),
    ((4, 9), 1),
    ((4, 9), 0),
    ((2, 3, 4, 5), 1),
    ((2, 3, 197), -1),
    ((3, 0, 4), 1),
    ((64, 3000), -1),
    ((3, 70, 33), 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("time_steps", [0, 16, SPIKES])
@pytest.mark.parametrize("shape, axis", NORM_CASES, ids=str)
def test_si_norm_matches_reference(harness, rng, dtype, time_steps, shape, axis):
    w = rng.uniform(0, 3, shape).astype(dtype)
    got = _host(harness.norm(_cuda(w), axis, time_steps))
    expected = si_norm(w, axis=axis, time_steps=time_steps)
    assert_rates_close(got, expected, axis, time_steps, dtype)
    if time_steps == SPIKES and w.size:
        assert np.count_nonzero(expected) > w.size * 0.9


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_si_norm_row_lengths(harness, rng, n):
    w = rng.uniform(0, 3, (5, n)).astype(np.float32)
    w[2] = 0  # V_th = 0: nothing fires
    w[3, 0] = np.nan  # a NaN threshold: NaN row
    got = _host(harness.norm(_cuda(w), -1, 0))
    assert_rates_close(got, si_norm(w, axis=-1), -1, 0, np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shift, sigmoid, time_steps", [(True, False, 0), (False, False, 0), (True, True, 0), (True, False, SPIKES)]
)
@pytest.mark.parametrize(
    "shape, axis",
    [((5,), 0), ((4, 9), 0), ((2, 3, 4, 5), -2), ((2, 3, 197), -1), ((8, 1000), -1), ((2, 3000), -1)],
    ids=str,
)
def test_fused_softmax_matches_reference(harness, rng, dtype, shift, sigmoid, time_steps, shape, axis):
    params = random_params(rng, 12)
    x = rng.normal(0, 3, shape).astype(dtype)
    got = _host(harness.softmax(_cuda(x), params, axis, time_steps, shift, sigmoid))
    expected = spiking_softmax(x, params, axis=axis, options=SoftmaxOptions(sigmoid, shift, time_steps))
    assert_rates_close(got, expected, axis, time_steps, dtype)
    assert np.count_nonzero(expected) > x.size // 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_fused_softmax_row_lengths(harness, rng, dtype, n):
    params = random_params(rng, 12)
    x = rng.normal(0, 2, (6, n)).astype(dtype)
    got = _host(harness.softmax(_cuda(x), params, -1, 0, True, False))
    expected = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    assert_rates_close(got, expected, -1, 0, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_chain_matches_reference(harness, rng, dtype):
    """What `rewrite` writes by default, on the GPU: max-shift, SpikingExp, then SpikingNorm. The
    graph's Sub rounds x - max to x's dtype before SI-exp sees it; so does the reference here."""
    params = random_params(rng, 12)
    x = rng.normal(0, 3, (4, 12, 197, 197)).astype(dtype)
    logits = _cuda(x)
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    got = _host(harness.norm(harness.exp(shifted, params), -1, 0))
    expected = si_norm(si_exp(x - x.max(axis=-1, keepdims=True), params), axis=-1)
    assert_rates_close(got, expected, -1, 0, dtype)


def test_fused_softmax_mask_rows(harness, rng):
    params = random_params(rng, 12)
    x = np.array([[0, 1, -3.4e38, -np.inf], [-3.4e38] * 4, [np.nan, 0, 1, 2], [-np.inf] * 4], dtype=np.float32)
    got = _host(harness.softmax(_cuda(x), params))
    expected = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.array_equal(np.isnan(got), np.isnan(expected))


def _tiled_check(op_out, row_expected):
    """Every row of a huge output equals the one reference row (checked on the GPU)."""
    import torch

    want = torch.from_numpy(np.ascontiguousarray(row_expected)).to(op_out.device, op_out.dtype)
    rows = op_out.reshape(-1, want.numel())
    worst = 0.0
    for start in range(0, rows.shape[0], 1 << 18):
        chunk = rows[start : start + (1 << 18)].float()
        worst = max(worst, float((chunk - want.float()).abs().nan_to_num(float("inf")).max()))
    return worst


@pytest.mark.slow
def test_grid_stride_and_64_bit_offsets(harness, rng):
    """More rows than one grid covers, and more than 2^31 elements: int64 indexing all the way."""
    import torch

    params = random_params(rng, 12)
    n = 1025  # the block-per-row kernel
    rows = (1 << 31) // n + 7
    row = rng.normal(0, 2, n).astype(np.float16)
    x = _cuda(row).repeat(rows)
    assert x.numel() > 1 << 31
    expected = spiking_softmax(row[None], params, options=SoftmaxOptions(shift=True))[0]
    assert _tiled_check(harness.softmax(x.view(rows, n), params), expected) <= 2e-3 * float(expected.max())
    expected_exp = si_exp(row, params)
    assert _tiled_check(harness.exp(x, params), expected_exp) == 0.0
    del x
    torch.cuda.empty_cache()
    many = 65535 * 32 * 4 + 37  # warp kernel: more rows than warps in its grid
    short = rng.normal(0, 2, 3).astype(np.float32)
    y = harness.softmax(_cuda(short).repeat(many).view(many, 3), params)
    assert _tiled_check(y, spiking_softmax(short[None], params, options=SoftmaxOptions(shift=True))[0]) <= 1e-6


def test_bad_parameters_are_refused(harness):
    params = SimpleNamespace(thresholds=[np.nan], resets=[1.0], weights=[1.0], steps=1)  # NeuronParams refuses it
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        harness.exp(_cuda(np.zeros(3, np.float32)), params)


@pytest.mark.parametrize("function", ["gelu", "gelu_gate"])  # a gate: x times the neuron inside the range
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 8, 12, 13, 64])
@pytest.mark.parametrize("n", [1, 3, 4, 1027, 1 << 20])
def test_spiking_activation_is_the_reference(harness, rng, dtype, steps, n, function):
    """Every element (NaN-filled output), the range edges, flat and sloped tails, bit for bit."""
    from sit_onnx.neurons.activation import ActivationParams, spiking_activation

    tails = (0.0, 0.0, 1.0, 0.0) if steps % 2 else (rng.uniform(-2, 2), -0.5, rng.uniform(-2, 2), 0.25)
    params = ActivationParams(function, random_params(rng, steps), float(rng.normal()), tails)
    lo, hi = params.input_range
    x = rng.uniform(lo - 3, hi + 3, n)
    x[: min(n, 6)] = [lo, hi, np.nan, -np.inf, np.inf, np.nextafter(np.float32(hi), 9)][: min(n, 6)]
    x = x.astype(dtype)
    got = _host(harness.activation(_cuda(x), params))
    np.testing.assert_array_equal(got, spiking_activation(x, params))
