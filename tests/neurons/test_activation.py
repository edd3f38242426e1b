"""The activation neuron's reference, its parameter files, its fit and the shipped sets."""

import json
import math

import numpy as np
import pytest

from sit_onnx.errors import SitOnnxError
from sit_onnx.neurons.activation import (
    FUNCTIONS,
    SHIPPED_STEPS,
    ActivationParams,
    activation_from_json,
    activation_function,
    activation_quality,
    fit_activation,
    load_activation,
    shipped_activation,
    spiking_activation,
)
from sit_onnx.neurons.params import NeuronParams
from sit_onnx.neurons.si_exp import si_exp
from tests.helpers import warnings_fail

NEURON = NeuronParams([0.5, -0.5, -1.5], [1.0, 1.0, 1.0], [0.25, 0.5, 0.125], (-2.0, 1.0))


def _set(bias=0.75, tails=(0.5, -1.0, 2.0, 3.0)):
    return ActivationParams("gelu", NEURON, bias, tails)


def test_inside_the_range_it_is_the_neuron_plus_bias_and_edges_are_inside():
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(spiking_activation(x, _set()), si_exp(x, NEURON) + np.float32(0.75))


def test_outside_the_range_each_side_follows_its_tail():
    x = np.array([-2.5, -10.0, 1.5, 10.0], dtype=np.float32)
    np.testing.assert_array_equal(spiking_activation(x, _set()), [0.5 * -2.5 - 1, 0.5 * -10 - 1, 2 * 1.5 + 3, 23.0])


def test_flat_tails_are_their_intercept_even_at_infinity_and_nan_stays_nan():
    x = np.array([-np.inf, np.inf, np.nan, -3.0, 5.0])
    got = spiking_activation(x, _set(tails=(0.0, -1.0, 0.0, 1.0)))
    np.testing.assert_array_equal(got, [-1.0, 1.0, np.nan, -1.0, 1.0])
    sloped = spiking_activation(x, _set(tails=(1.0, 0.0, 1.0, 0.0)))
    np.testing.assert_array_equal(sloped[:3], [-np.inf, np.inf, np.nan])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_keeps_the_input_dtype(dtype):
    x = np.linspace(-3, 2, 11).astype(dtype)
    assert spiking_activation(x, _set()).dtype == dtype


def test_spikes_only_inside_the_range():
    x = np.array([-5.0, -1.0, 0.7, 4.0])
    _, spikes = spiking_activation(x, _set(), return_spikes=True)
    assert spikes.shape == (4, 3)
    assert spikes[[0, 3]].sum() == 0 and spikes[1:3].sum() > 0
    np.testing.assert_array_equal(spikes[1:3], si_exp(x[1:3], NEURON, return_spikes=True)[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"function": "relu"}, "unknown activation 'relu'"),
        ({"tails": (0.0, 1.0)}, "tails holds 2 values; need 4"),
        ({"bias": math.nan}, "bias and tails must be finite float32"),
        ({"tails": (0.0, 1e39, 0.0, 0.0)}, "bias and tails must be finite float32"),
        (
            {"neuron": NeuronParams([0.0], [1.0], [1.0, 2.0], (-1, 1), offsets=(0.0, 0.5))},
            "one neuron, not an ensemble",
        ),
    ],
)
def test_a_set_is_validated(kwargs, message):
    fields = {"function": "gelu", "neuron": NEURON, "bias": 0.0, "tails": (0.0, 0.0, 1.0, 0.0), **kwargs}
    with pytest.raises(SitOnnxError, match=message):
        ActivationParams(**fields)


def test_json_round_trip(tmp_path):
    path = tmp_path / "set.json"
    _set().save(path)
    loaded = load_activation(path)
    assert loaded.to_json() == _set().to_json() and loaded.bias == 0.75  # (rmse NaN: no == on the records)
    assert json.loads(path.read_text())["format"] == "sit-onnx/activation-params"


def _record(**changes):
    record = json.loads(_set().to_json())
    record.update(changes)
    return json.dumps(record)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ("[]", "not a sit-onnx activation file"),
        (
            _record(format="sit-onnx/si-exp-params"),
            "^f.json: an SI-exp parameter set, not an activation set; it goes to --params$",
        ),
        (_record(format="sit-onnx/other"), "not a sit-onnx activation file"),
        (_record(version=2), "activation file version 2, this sit-onnx reads 1"),
        (_record(tails="none"), "bias must be a number and tails a list of numbers"),
        (_record(bias=True), "bias must be a number and tails a list of numbers"),
        (_record(function="relu"), "unknown activation 'relu'"),
        (_record(neuron={"format": "x"}), "neuron: not a sit-onnx parameter file"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(text, message):
    with pytest.raises(SitOnnxError, match=message) as info:
        activation_from_json(text, "f.json")
    assert str(info.value).startswith("f.json") and "\n" not in str(info.value)


def test_a_file_lacking_fields_names_them():
    record = json.loads(_set().to_json())
    del record["bias"], record["tails"]
    with pytest.raises(SitOnnxError, match="lacks bias, tails"):
        activation_from_json(json.dumps(record))


def test_missing_file(tmp_path):
    with pytest.raises(SitOnnxError, match="activation file not found"):
        load_activation(tmp_path / "none.json")
    with pytest.raises(SitOnnxError) as caught:
        load_activation(tmp_path)
    assert str(caught.value) == f"{tmp_path}: a folder, where a JSON activation set was expected"


# RMSE of the shipped sets on their ranges (measured when fitted; the bound leaves ~10% room). GELU's
# sets spend their levels where FFN inputs fall (below), so their uniform RMSE is higher.
SHIPPED_RMSE = {
    "gelu": (0.0385, 0.0325, 0.0225, 0.0205, 0.0158),
    "silu": (0.058, 0.049, 0.0375, 0.027, 0.022),
    "sigmoid": (0.0136, 0.0101, 0.007, 0.0059, 0.0048),
    "tanh": (0.027, 0.021, 0.0149, 0.012, 0.0103),
    "hardsigmoid": (0.0041, 0.0026, 0.0018, 0.0017, 0.0011),
    "hardswish": (0.053, 0.035, 0.03, 0.021, 0.0175),
    # the gates of --activation-form gated, judged as x * gate against the gated function
    "gelu_gate": (0.011, 0.0065, 0.0055, 0.0047, 0.0039),
    "silu_gate": (0.019, 0.0155, 0.011, 0.0095, 0.0078),  # K=12-16 basin-hopped
    "hardswish_gate": (0.0093, 0.006, 0.0048, 0.0029, 0.0017),
}


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_shipped_sets_fit_their_function_and_improve_with_steps(function):
    figures = [activation_quality(shipped_activation(function, k)) for k in SHIPPED_STEPS]
    for quality, bound in zip(figures, SHIPPED_RMSE[function]):
        assert quality.rmse <= bound and quality.range == FUNCTIONS[function].default_range
        assert quality.tail_max_error < 3e-3  # the tails meet the function where the range ends
    assert [f.rmse for f in figures] == sorted((f.rmse for f in figures), reverse=True)
    assert shipped_activation(function, 12).tails == FUNCTIONS[function].tails


# GELU's sets are weighted by N(-1.2, 1.25^2), the FFN inputs of two pretrained encoders (ALBERT: mean
# -1.09, sd 1.23; BERT: -1.32, 1.27): their RMSE on such inputs (measured 0.0234 .. 0.0088; the
# uniformly fitted sets they replaced: 0.0339 .. 0.0114)
GELU_PRIOR_RMSE = (0.0258, 0.0213, 0.0166, 0.0129, 0.0097)


def test_shipped_gelu_sets_serve_the_inputs_they_were_weighted_by():
    x = np.random.default_rng(5).normal(-1.2, 1.25, 200_000).astype(np.float32)
    figures = []
    for steps, bound in zip(SHIPPED_STEPS, GELU_PRIOR_RMSE):
        params = shipped_activation("gelu", steps)
        error = spiking_activation(x, params) - activation_function("gelu").exact(x)
        figures.append(float(np.sqrt(np.mean(error**2))))
        assert figures[-1] <= bound < params.neuron.rmse  # better there than on average
        assert params.neuron.meta["inputs"] == "normal:-1.2,1.25"
    assert figures == sorted(figures, reverse=True)  # and better with every K there


def test_no_shipped_set_for_other_steps():
    with pytest.raises(SitOnnxError, match="no shipped silu set for K=9; shipped for K = 8, 10, 12, 14, 16"):
        shipped_activation("silu", 9)


def test_fit_is_seeded_and_far_better_than_a_constant():
    first = fit_activation("sigmoid", 6, (-4, 4), seed=3, restarts=1, iterations=60, polish_rounds=3)
    again = fit_activation("sigmoid", 6, (-4, 4), seed=3, restarts=1, iterations=60, polish_rounds=3)
    assert first == again
    x = np.linspace(-4, 4, 1001)
    constant_rmse = np.std(1 / (1 + np.exp(-x)))  # the best a bias alone can do
    quality = activation_quality(first)
    assert quality.rmse < 0.2 * constant_rmse and first.neuron.rmse == quality.rmse
    assert first.input_range == (-4.0, 4.0) and first.tails == (0.0, 0.0, 0.0, 1.0)


def test_fit_refuses_a_bad_range():
    with pytest.raises(SitOnnxError, match="need finite LO < HI"):
        fit_activation("gelu", 4, (1.0, 1.0))
    with pytest.raises(SitOnnxError, match=r"^--range: -1e\+30\.\.0 is wider than 100; fit a narrower range$"):
        fit_activation("tanh", 4, (-1e30, 0.0))  # it "fitted" before, and a gate's fit died in numpy
    with pytest.raises(SitOnnxError, match=r"^--range: -50\.\.50\.5 is wider than 100"):
        fit_activation("gelu", 4, (-50.0, 50.5))


def test_a_saved_set_is_indented_and_a_bad_file_is_named(tmp_path):
    path = tmp_path / "set.json"
    _set().save(path)
    assert '\n  "function": "gelu"' in path.read_text()
    path.write_text("{}")
    with pytest.raises(SitOnnxError, match=f"^{path}: not a sit-onnx activation file"):
        load_activation(path)


def test_sample_weights_on_a_short_grid_and_a_single_sample():
    from sit_onnx.neurons.activation import sample_weights

    grid = np.linspace(-1, 1, 101)  # under 200 points: no smoothing (a window of one point)
    w = sample_weights(grid, np.array([[0.0]]))
    assert np.count_nonzero(w > w.min()) == 1 and w[50] == w.max()


def _small_fit(**kwargs):
    options = {"restarts": 1, "iterations": 100, "polish_rounds": 0, **kwargs}
    return fit_activation("gelu", 6, (-3, 3), **options)


def test_fit_uses_its_seed_range_and_target():
    from dataclasses import replace

    from sit_onnx.neurons.fit import GRID_POINTS, FitOptions, explore_start, true_rmse

    first = _small_fit()
    assert _small_fit(seed=1).neuron.thresholds != first.neuron.thresholds
    assert max(first.neuron.thresholds) - min(first.neuron.thresholds) > 2.5  # spread over [-3, 3], not [-1, 1]
    assert first.neuron.meta == {"seed": 0, "polish_rounds": 0, "hops": 0, "restarts": 1, "iterations": 100}
    assert first.neuron.method == "surrogate-gradient explore + coordinate polish"
    quality = activation_quality(first)
    assert (first.neuron.rmse, first.neuron.max_error) == (quality.rmse, quality.max_error)
    # the exploration fits GELU itself: exploring exp (then solving d for GELU) is clearly worse
    x = np.linspace(-3, 3, GRID_POINTS)
    opts = replace(FitOptions(), steps=6, input_range=(-3, 3), restarts=1, iterations=100)
    th, rs = explore_start(x, opts, lambda: None)
    on_exp = true_rmse(x, FUNCTIONS["gelu"].exact(x), th, rs, 1e-9, bias=True)[0]
    on_gelu = true_rmse(x, FUNCTIONS["gelu"].exact(x), first.neuron.thresholds, first.neuron.resets, 1e-9, bias=True)[0]
    assert on_gelu < 0.9 * on_exp


def test_fit_ticks_once_per_iteration_and_polish_round():
    ticks = []
    fit_activation("tanh", 4, restarts=2, iterations=30, polish_rounds=2, progress=ticks.append)
    assert set(ticks) == {1} and 60 < len(ticks) <= 62


def test_a_fit_on_samples_polishes_and_solves_d_on_the_weighted_error():
    from sit_onnx.neurons.activation import sample_weights
    from sit_onnx.neurons.fit import GRID_POINTS, true_rmse

    samples = np.random.default_rng(0).normal(-1, 0.4, 50_000)
    start = shipped_activation("gelu", 8)
    weighted = fit_activation("gelu", 8, (-4, 4), samples=samples, warm_start=start, polish_rounds=3)
    plain = fit_activation("gelu", 8, (-4, 4), warm_start=start, polish_rounds=3)
    assert weighted.neuron.thresholds != plain.neuron.thresholds  # the weights move the optimum
    x = np.linspace(-4, 4, GRID_POINTS)
    w = sample_weights(x, samples)
    n = weighted.neuron
    _, solved = true_rmse(x, FUNCTIONS["gelu"].exact(x), n.thresholds, n.resets, 1e-9, w, bias=True)
    np.testing.assert_allclose([*n.weights, weighted.bias], solved, rtol=1e-9, atol=1e-12)


def test_quality_figures_of_a_shipped_set_are_what_its_fit_recorded():
    for function in ("gelu", "hardswish"):
        params = shipped_activation(function, 12)
        quality = activation_quality(params)
        assert quality.function == function and quality.steps == 12
        assert quality.rmse == pytest.approx(params.neuron.rmse, rel=1e-12)
        assert quality.max_error == pytest.approx(params.neuron.max_error, rel=1e-12)
        assert 0 < quality.mean_spikes < 12


def test_tail_error_is_read_just_outside_each_end():
    """Tails off by 0.5 below and 0.3 above: the largest error is the one just above the range."""
    from sit_onnx.neurons.activation import _gelu

    params = ActivationParams("gelu", shipped_activation("gelu", 8).neuron, 0.0, (0.0, 0.1, 1.0, 0.3))
    expected = max(abs(0.1 - _gelu(np.array([-4 - 1e-6]))[0]), abs(4.3 + 1e-6 - _gelu(np.array([4 + 1e-6]))[0]))
    assert activation_quality(params).tail_max_error == pytest.approx(expected, rel=1e-9)


def test_the_reference_warns_about_nothing_and_spikes_at_the_range_ends():
    neuron = NeuronParams([0.5, -0.5, -1.5], [1.0, 1.0, 1.0], [0.25, 0.5, 0.125], (-1.0, 0.5))
    params = ActivationParams("gelu", neuron, 0.0, (2.0, 0.0, 2.0, 0.0))
    with warnings_fail():  # an overflow in the tails (2 * 3e38) must stay quiet
        y, spikes = spiking_activation(np.array([-3e38, 3e38, -1.0, 0.5], np.float32), params, return_spikes=True)
    assert y[0] == -np.inf and y[1] == np.inf
    np.testing.assert_array_equal(spikes[2:], si_exp(np.array([-1.0, 0.5]), neuron, return_spikes=True)[1])
    assert spikes[2].any() and spikes[3].any()


def test_bias_and_tails_are_stored_as_floats_up_to_float32s_largest():
    from sit_onnx.neurons.activation import sample_weights
    from sit_onnx.neurons.params import FLOAT32_MAX

    params = ActivationParams("gelu", NEURON, 1, (0, 0, 1, FLOAT32_MAX))
    assert isinstance(params.bias, float) and all(isinstance(v, float) for v in params.tails)
    assert sample_weights(np.linspace(-1, 1, 11), np.zeros(0)).shape == (11,)


@pytest.mark.parametrize("input_range", [(-1e39, 4.0), (1.0, 1.00000001)])
def test_a_range_the_op_cannot_store_in_float32_is_refused(input_range):
    """The op stores low and high as float32: beyond its range, or LO == HI once rounded, the kernels
    would refuse the model only when a session loads it."""
    neuron = NeuronParams([0.5], [1.0], [0.25], input_range)
    with pytest.raises(SitOnnxError, match="must stay finite with LO < HI in float32"):
        ActivationParams("gelu", neuron)


def test_float16_results_past_its_range_are_inf_without_warnings():
    """A tail of slope 2 sends float16's 6e4 to 1.2e5: inf, as the kernels give, and no numpy
    warning (a `-W error` run failed on it)."""
    params = ActivationParams("gelu", shipped_activation("gelu", 8).neuron, 0.0, (0.0, 0.0, 2.0, 0.0))
    x = np.array([6e4, 1.0, -6e4], np.float16)
    with warnings_fail():
        y = spiking_activation(x, params)
    assert y.dtype == np.float16 and np.isinf(y[0]) and y[2] == 0 and np.isfinite(y[1])
