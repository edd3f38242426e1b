"""The CUDA kernels themselves against the numpy reference, through the test harness
(tests/cuda_harness.py): runs on any CUDA machine with torch, with or without onnxruntime-gpu.
The same kernels behind onnxruntime's CUDA provider are tested in test_kernels.py."""

from types import SimpleNamespace

import numpy as np
import pytest

from sit_onnx.neurons import SoftmaxOptions, si_exp, si_norm, spiking_softmax
from tests.cuda_harness import Harness, unavailable_reason
from tests.helpers import random_params

REASON = unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
DTYPES = [np.float32, np.float16]


@pytest.fixture(scope="module")
def harness():
    return Harness()


def _cuda(array):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).cuda()


def _host(tensor):
    return tensor.cpu().numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 4, 12, 64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5, 11), (2, 1, 40000), (8, 12, 197, 197)], ids=str)
def test_si_exp_is_the_reference(harness, rng, dtype, steps, shape):
    params = random_params(rng, steps)
    x = rng.uniform(-10, 3, shape).astype(dtype)
    got = _host(harness.exp(_cuda(x), params))
    np.testing.assert_array_equal(got, si_exp(x, params))  # exact: same float32 steps, same rounding


def test_si_exp_edge_values(harness, rng):
    params = random_params(rng, 12)
    x = np.array([np.nan, np.inf, -np.inf, -3.4e38, 3.4e38, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(_host(harness.exp(_cuda(x), params)), si_exp(x, params))


NORM_CASES = [
    ((5,), 0),
    ((4, 9), 1),
    ((4, 9), 0),
    ((2, 3, 4, 5), 1),
    ((2, 3, 197), -1),
    ((3, 0, 4), 1),
    ((64, 3000), -1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("time_steps", [0, 16])
@pytest.mark.parametrize("shape, axis", NORM_CASES, ids=str)
def test_si_norm_matches_reference(harness, rng, dtype, time_steps, shape, axis):
    w = rng.uniform(0, 3, shape).astype(dtype)
    got = _host(harness.norm(_cuda(w), axis, time_steps)).astype(np.float32)
    expected = si_norm(w, axis=axis, time_steps=time_steps).astype(np.float32)
    tolerance = 1e-5 if dtype == np.float32 else 2e-3
    allowed = got.size // 100 if time_steps else 0  # floor() may move by one spike within rounding
    assert np.count_nonzero(np.abs(got - expected) > tolerance * np.maximum(1, np.abs(expected))) <= allowed


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shift, sigmoid, time_steps", [(True, False, 0), (False, False, 0), (True, True, 0), (True, False, 16)]
)
@pytest.mark.parametrize(
    "shape, axis",
    [((5,), 0), ((4, 9), 0), ((2, 3, 4, 5), -2), ((2, 3, 197), -1), ((8, 1000), -1), ((2, 3000), -1)],
    ids=str,
)
def test_fused_softmax_matches_reference(harness, rng, dtype, shift, sigmoid, time_steps, shape, axis):
    params = random_params(rng, 12)
    x = rng.normal(0, 3, shape).astype(dtype)
    got = _host(harness.softmax(_cuda(x), params, axis, time_steps, shift, sigmoid)).astype(np.float32)
    options = SoftmaxOptions(sigmoid, shift, time_steps)
    expected = spiking_softmax(x, params, axis=axis, options=options).astype(np.float32)
    tolerance = 1e-5 if dtype == np.float32 else 2e-3
    assert np.count_nonzero(np.abs(got - expected) > tolerance) <= max(1, got.size // 100)


def test_fused_softmax_mask_rows(harness, rng):
    params = random_params(rng, 12)
    x = np.array([[0, 1, -3.4e38, -np.inf], [-3.4e38] * 4, [np.nan, 0, 1, 2], [-np.inf] * 4], dtype=np.float32)
    got = _host(harness.softmax(_cuda(x), params))
    expected = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.array_equal(np.isnan(got), np.isnan(expected))


def test_bad_parameters_are_refused(harness):
    params = SimpleNamespace(thresholds=[np.nan], resets=[1.0], weights=[1.0], steps=1)  # NeuronParams refuses it
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        harness.exp(_cuda(np.zeros(3, np.float32)), params)
