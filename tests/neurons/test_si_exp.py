import numpy as np
import pytest

from sit_onnx.neurons import shipped_params, si_exp
from sit_onnx.neurons.params import PAPER_RANGE, SHIFT_RANGE, SHIPPED_STEPS
from tests.helpers import warnings_fail


@pytest.mark.parametrize(
    "x, spikes, out",
    [
        # v=0.9 fires at t1 (>=0.5) -> v=-0.1; t2 (>=0)? no; t3 (>=-0.5) fires -> 2 + 0.5
        (0.9, [1, 0, 1], 2.5),
        # exactly on a threshold fires: H(0) = 1; v=0.5 -> -0.5; t2 no; t3 -0.5>=-0.5 fires
        (0.5, [1, 0, 1], 2.5),
        # v=0.2: t1 no; t2 fires -> -0.3; t3 fires -> 1 + 0.5
        (0.2, [0, 1, 1], 1.5),
        (-0.6, [0, 0, 0], 0.0),
    ],
)
def test_hand_worked_cases(tiny_params, x, spikes, out):
    got, trains = si_exp(np.array([x]), tiny_params, return_spikes=True)
    assert trains[0].astype(int).tolist() == spikes
    assert got[0] == pytest.approx(out)


def test_output_is_weighted_spike_sum(tiny_params, rng):
    x = rng.uniform(-2, 2, (5, 7))
    out, trains = si_exp(x, tiny_params, return_spikes=True)
    assert trains.shape == (5, 7, 3)
    np.testing.assert_allclose(out, trains @ np.array(tiny_params.weights), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (0,), (1,), (3, 4, 5)])
def test_shape_and_dtype_preserved(tiny_params, rng, dtype, shape):
    x = rng.uniform(-1, 1, shape).astype(dtype)
    out = si_exp(x, tiny_params)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_edge_values(tiny_params):
    x = np.array([np.nan, np.inf, -np.inf, -3.4e38, 3.4e38], dtype=np.float32)
    out = si_exp(x, tiny_params)
    assert np.isnan(out[0])
    saturation = sum(tiny_params.weights)
    assert out[1] == saturation and out[4] == saturation
    assert out[2] == 0 and out[3] == 0


def test_rejects_integer_input(tiny_params):
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        si_exp(np.arange(3), tiny_params)


@pytest.mark.parametrize("steps", SHIPPED_STEPS)
def test_shipped_paper_sets_approximate_exp(steps):
    params = shipped_params(steps, PAPER_RANGE)
    x = np.linspace(-1, 1, 2001)
    rmse = np.sqrt(np.mean((si_exp(x, params) - np.exp(x)) ** 2))
    # a good fit (see shared/neuron-fit-reference.md) falls roughly as 0.77*K^-1.6
    assert rmse < 1.5 * 0.77 * steps**-1.6 + 0.005
    assert params.rmse == pytest.approx(rmse, rel=0.2)


def test_shipped_sets_improve_with_steps():
    errors = [shipped_params(k, PAPER_RANGE).rmse for k in SHIPPED_STEPS]
    assert errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("steps", SHIPPED_STEPS)
@pytest.mark.parametrize("objective, bound", [("exp-rmse", 0.025), ("softmax", 0.04)])
def test_shipped_shift_sets_cover_negative_range(steps, objective, bound):
    """Both kinds of max-shift set follow exp on the range (the softmax ones trade some RMSE for
    the row error: scale is free there)."""
    params = shipped_params(steps, SHIFT_RANGE, objective)
    x = np.linspace(*SHIFT_RANGE, 4001)
    err = np.abs(si_exp(x, params) - np.exp(x))
    assert np.sqrt(np.mean(err**2)) < bound  # shared/neuron-fit-reference.md: 0.0073 at K=12, R=12
    assert err.max() <= 1.2 * params.max_error + 1e-3  # the file's own figure holds on a fine grid


def test_ensemble_sums_offset_members(tiny_params, rng):
    from sit_onnx.neurons import NeuronParams

    ensemble = NeuronParams(
        tiny_params.thresholds,
        tiny_params.resets,
        tiny_params.weights + (1.0, 1.0, 1.0),
        tiny_params.input_range,
        offsets=(0.0, 0.4),
    )
    x = rng.uniform(-1, 1, 50)
    second = NeuronParams(tiny_params.thresholds, tiny_params.resets, (1.0, 1.0, 1.0), tiny_params.input_range)
    np.testing.assert_allclose(si_exp(x, ensemble), si_exp(x, tiny_params) + si_exp(x + 0.4, second))
    out, spikes = si_exp(x, ensemble, return_spikes=True)
    assert spikes.shape == (50, 6)


def test_ensemble_option_reaches_the_papers_figure():
    """At K=12, 20 offset neurons summed beat the paper's single-neuron RMSE 0.0015413 on [-1, 1]."""
    from sit_onnx.neurons.fit import fit_ensemble

    ensemble = fit_ensemble(shipped_params(12, PAPER_RANGE), 20)
    x = np.random.default_rng(3).uniform(-1, 1, 50_000)
    rmse = np.sqrt(np.mean((si_exp(x, ensemble) - np.exp(x)) ** 2))
    assert rmse < 0.0015413 and ensemble.neurons == 20 and len(ensemble.weights) == 20 * 12


def test_float32_input_meets_thresholds_stored_as_float32():
    """The ops store T in float32: an input equal to float32(0.7) (just below 0.7) is on the threshold
    and fires, as in the kernels; compared in float64 it would fall short of 0.7."""
    from sit_onnx.neurons import NeuronParams

    params = NeuronParams([0.7], [1.0], [1.0], (-1, 1))
    x = np.array([np.float32(0.7), np.nextafter(np.float32(0.7), np.float32(0))], np.float32)
    assert si_exp(x, params).tolist() == [1.0, 0.0]
    assert si_exp(x.astype(np.float64), params).tolist() == [0.0, 0.0]  # float64 computes in float64


def test_edge_inputs_raise_no_numpy_warnings():
    """Infinities, NaN and a membrane pushed past float32's range (a negative reset on the largest
    input) are defined outputs, not warnings a `-W error` run turns into failures."""
    from sit_onnx.neurons import NeuronParams

    overflowing = NeuronParams([0.0, 1e38], [-1e38, 1.0], [1.0, 2.0], (-1, 1))
    cases = [
        (shipped_params(12, SHIFT_RANGE), np.array([np.inf, -np.inf, np.nan, 3.4e38, -3.4e38], np.float32)),
        (shipped_params(12, SHIFT_RANGE), np.array([6e4, np.inf], np.float16)),
        (NeuronParams([0.0], [1.0], [7e4], (-1, 1)), np.array([1.0], np.float16)),  # past float16: inf
        (overflowing, np.array([3.4e38, -1.0], np.float32)),
    ]
    for params, x in cases:
        with warnings_fail():
            out = si_exp(x, params)
        assert np.isnan(out).tolist() == np.isnan(x).tolist()
    # the overflowed membrane (inf) crosses the second threshold too
    assert si_exp(np.array([3.4e38, -1.0], np.float32), overflowing).tolist() == [3.0, 0.0]


def test_float32_input_steps_its_membrane_in_float32():
    """float32 and float16 inputs compute every step in float32, as the kernels do: the set rounded
    to float32, each `v - h` rounded to float32, the output summed in float32. Each case below
    differs from the float64 computation of the same values, which float64 input keeps."""
    from sit_onnx.neurons import NeuronParams

    # a reset float32 rounds (1.75 + 3e-8 -> 1.75): 2 - h lands on the second threshold, 0.25
    rounded_reset = NeuronParams([1.0, 0.25], [1.75 + 3e-8, 1.0], [1.0, 1.0], (-1, 3))
    # 1 + 2**-23 minus a reset of -2**-24 rounds to 1 + 2**-22 in float32, the second threshold
    rounded_membrane = NeuronParams([1.0, 1.0 + 2**-22], [-(2**-24), 1.0], [1.0, 1.0], (-1, 3))
    # 1 + 2**-24 + 2**-24 sums to 1 in float32 (each addition ties to even), to 1 + 2**-23 in float64
    rounded_sum = NeuronParams([-1.0, -1.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2**-24, 2**-24], (-1, 3))
    for params, x, float32_out, float64_out in [
        (rounded_reset, 2.0, 2.0, 1.0),
        (rounded_membrane, 1.0 + 2**-23, 2.0, 1.0),
        (rounded_sum, 0.0, 1.0, 1.0 + 2**-23),
    ]:
        assert si_exp(np.array([x], np.float32), params).tolist() == [float32_out]
        assert si_exp(np.array([x], np.float64), params).tolist() == [float64_out]
    assert si_exp(np.array([2.0], np.float16), rounded_reset).tolist() == [2.0]


def test_spike_trains_are_boolean_per_step(tiny_params):
    out, spikes = si_exp(np.array([[0.7, -0.2]], np.float32), tiny_params, return_spikes=True)
    assert spikes.dtype == np.bool_ and spikes.shape == (1, 2, 3)
    assert spikes.tolist() == [[[True, False, True], [False, False, True]]]  # 0.7 - 1 = -0.3 >= -0.5
    assert out.tolist() == [[2.5, 0.5]]
