import json

import pytest

from sit_onnx.errors import SitOnnxError
from sit_onnx.neurons.params import NeuronParams, load_params, params_from_json, shipped_params


def test_round_trip(tmp_path, tiny_params):
    path = tmp_path / "p.json"
    tiny_params.save(path)
    loaded = load_params(path)
    assert loaded.thresholds == tiny_params.thresholds and loaded.steps == 3
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def _record(tiny_params, **changes):
    record = json.loads(tiny_params.to_json())
    record.update(changes)
    return json.dumps(record)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a sit-onnx parameter file"),
        ('{"format": "other"}', "not a sit-onnx parameter file"),
        (
            '{"format": "sit-onnx/activation-params", "function": "gelu"}',
            r"^p.json: an activation set \(gelu\), not an SI-exp parameter set; activation sets go to "
            r"--activation-params \(`neuron show`: with --function\)$",
        ),
    ],
)
def test_malformed_text(text, message):
    with pytest.raises(SitOnnxError, match=message):
        params_from_json(text, "p.json")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"version": 99}, "version 99"),
        ({"resets": [1.0, 2.0]}, "lengths differ"),
        ({"weights": ["a", "b", "c"]}, "weights must be a list of numbers"),
        ({"thresholds": [0.5, True, -0.5]}, "^p.json: thresholds must be a list of numbers$"),
        ({"resets": "1, 2, 3"}, "^p.json: resets must be a list of numbers$"),
        ({"input_range": [-1, None]}, "^p.json: input_range must be a list of numbers$"),
        ({"offsets": {"a": 0}}, "^p.json: offsets must be a list of numbers$"),
        ({"meta": [1]}, "^p.json: meta must be an object, got list$"),
        ({"rmse": "0.1"}, "^p.json: rmse must be a number, got str$"),
        ({"max_error": True}, "^p.json: max_error must be a number, got bool$"),
        ({"rmse": 10**400}, "^p.json: rmse is too large for a float$"),
        ({"thresholds": [10**400, 0, 0]}, "^p.json: a threshold, reset or weight is too large for a float$"),
        ({"input_range": [1, -1]}, "LO < HI"),
        ({"steps": 5}, "says steps=5 but holds 3"),
        ({"thresholds": [], "resets": [], "weights": []}, "0 steps"),
    ],
)
def test_mismatched_fields(tiny_params, changes, message):
    with pytest.raises(SitOnnxError, match=message):
        params_from_json(_record(tiny_params, **changes), "p.json")


def test_missing_field(tiny_params):
    record = json.loads(tiny_params.to_json())
    del record["weights"]
    with pytest.raises(SitOnnxError, match="^<string>: parameter file lacks weights$"):
        params_from_json(json.dumps(record))
    del record["thresholds"]
    with pytest.raises(SitOnnxError, match="^<string>: parameter file lacks thresholds, weights$"):
        params_from_json(json.dumps(record))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 100_000 + "]" * 100_000, "^p.json: not a sit-onnx parameter file \\(JSON nested too deeply\\)$"),
        ('{"x": ' + "9" * 5000 + "}", "^p.json: not a usable parameter file \\(Exceeds the limit .*\\)$"),
    ],
)
def test_unreadable_json_is_named_in_one_line(text, message):
    with pytest.raises(SitOnnxError, match=message):
        params_from_json(text, "p.json")


def test_optional_fields_take_their_defaults(tiny_params):
    record = json.loads(tiny_params.to_json())
    for key in ("rmse", "max_error", "method", "meta", "offsets"):
        record.pop(key, None)
    loaded = params_from_json(json.dumps({**record, "meta": None}))
    assert loaded.method == "unknown" and loaded.meta == {} and loaded.offsets == (0.0,) and loaded.neurons == 1
    assert loaded.rmse != loaded.rmse and loaded.max_error != loaded.max_error  # NaN: not measured
    assert params_from_json(json.dumps({**record, "method": "by hand", "rmse": 0.5})).method == "by hand"


def test_a_bad_file_is_named_by_its_path(tmp_path, tiny_params):
    path = tmp_path / "bad.json"
    path.write_text(_record(tiny_params, steps=7))
    with pytest.raises(SitOnnxError, match=f"^{path}: says steps=7 but holds 3 thresholds$"):
        load_params(path)


def test_shipped_defaults_and_unknown_objective():
    assert shipped_params().steps == 12 and shipped_params().input_range == (-1.0, 1.0)
    with pytest.raises(SitOnnxError, match="^unknown objective 'kl'; known: exp-rmse, softmax$"):
        shipped_params(12, (-12, 0), "kl")


def test_non_finite_value_refused():
    with pytest.raises(SitOnnxError, match="NaN or infinite"):
        NeuronParams([float("nan")], [1.0], [1.0], (-1, 1))


def test_too_many_steps_refused():
    with pytest.raises(SitOnnxError, match="1 to 64"):
        NeuronParams([0.0] * 65, [0.0] * 65, [0.0] * 65, (-1, 1))


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(SitOnnxError, match="not found"):
        load_params(tmp_path / "nope.json")


def test_unknown_shipped_set_lists_what_exists():
    """The K values shipped for that range and objective, not every file of every function."""
    with pytest.raises(SitOnnxError, match=r"K=5 .*shipped there: K = 4, 6, 8, 10, 12, 14, 16 "):
        shipped_params(5, (-1, 1))
    with pytest.raises(SitOnnxError, match=r"K=12 on \[-3, 0\] fitted to softmax; shipped there: none"):
        shipped_params(12, (-3, 0), "softmax")


def test_ensemble_round_trip_and_length_check(tmp_path, tiny_params):
    ensemble = NeuronParams(
        tiny_params.thresholds,
        tiny_params.resets,
        tiny_params.weights * 2,
        tiny_params.input_range,
        offsets=(-0.1, 0.1),
    )
    ensemble.save(tmp_path / "e.json")
    assert load_params(tmp_path / "e.json").offsets == (-0.1, 0.1)
    with pytest.raises(SitOnnxError, match=r"expected 6 for 2 neurons"):
        NeuronParams(tiny_params.thresholds, tiny_params.resets, tiny_params.weights, (-1, 1), offsets=(0.0, 1.0))


def test_relative_weighting_favours_small_values():
    import numpy as np

    from sit_onnx.neurons.fit import point_weights, true_rmse

    x = np.linspace(-12, 0, 2000)
    thresholds, resets = np.array([-1.0, -4.0, -8.0]), np.array([1.0, 3.0, 4.0])
    _, d_abs = true_rmse(x, np.exp(x), thresholds, resets)
    _, d_rel = true_rmse(x, np.exp(x), thresholds, resets, weight=point_weights(x, "relative"))
    # the relative fit spends its weights where exp is small: the last (lowest) step gets more weight
    assert abs(d_rel[-1] - np.exp(-8)) < abs(d_abs[-1] - np.exp(-8))
    relative = point_weights(x, "relative")
    assert relative.mean() == pytest.approx(1.0)
    # squared errors weighted by exp(-x/2): halfway between absolute and fully relative error
    np.testing.assert_allclose(relative / relative[-1], np.exp(-x / 2), rtol=1e-12)
    assert (point_weights(x, "absolute") == 1).all()
    with pytest.raises(ValueError, match=r"^unknown weighting 'rel'; known: absolute, relative$"):
        point_weights(x, "rel")


def test_each_ensemble_member_reads_its_own_weights(tiny_params):
    ensemble = NeuronParams(
        tiny_params.thresholds, tiny_params.resets, (1, 2, 3, 4, 5, 6, 7, 8, 9), (-1, 1), offsets=(0, 1, 2)
    )
    assert [ensemble.neuron_weights(j) for j in range(3)] == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]


def test_step_and_member_counts_are_bounded_at_64_inclusive():
    assert NeuronParams([0.0] * 64, [0.0] * 64, [0.0] * 64, (-1, 1)).steps == 64
    assert NeuronParams([0.0], [0.0], [0.0] * 64, (-1, 1), offsets=[0.0] * 64).neurons == 64
    with pytest.raises(SitOnnxError, match="^parameter set has 0 steps; SpikingExp supports 1 to 64$"):
        NeuronParams([], [], [], (-1, 1))
    with pytest.raises(SitOnnxError, match="^parameter set has 65 offsets; an ensemble has 1 to 64 neurons$"):
        NeuronParams([0.0], [0.0], [0.0] * 65, (-1, 1), offsets=[0.0] * 65)


def test_the_refusals_say_exactly_what_is_wrong():
    with pytest.raises(SitOnnxError) as single:
        NeuronParams([0.0, 1.0], [1.0], [1.0, 1.0], (-1, 1))
    assert str(single.value) == "parameter set lengths differ: thresholds 2, resets 1, weights 2"
    with pytest.raises(SitOnnxError) as nan:
        NeuronParams([0.0], [float("inf")], [1.0], (-1, 1))
    assert str(nan.value) == "parameter set holds a NaN or infinite threshold, reset or weight"
    with pytest.raises(SitOnnxError) as big:
        NeuronParams([0.0], [1.0], [1e39], (-1, 1))
    assert str(big.value) == ("parameter set holds a value beyond float32's range (|v| > 3.4e38), which the ops store")


def test_float32s_largest_value_is_accepted():
    from sit_onnx.neurons.params import FLOAT32_MAX

    assert NeuronParams([0.0], [FLOAT32_MAX], [-FLOAT32_MAX], (-1, 1)).resets == (FLOAT32_MAX,)


@pytest.mark.parametrize("input_range", [(0, 0), (1, -1), (-1, 0, 1), (0,)])
def test_an_input_range_must_be_two_numbers_low_to_high(input_range):
    with pytest.raises(SitOnnxError, match=r"^parameter set input_range must be two finite numbers LO < HI, got \["):
        NeuronParams([0.0], [1.0], [1.0], input_range)


def test_the_shift_range_ships_softmax_sets_and_the_paper_range_exp_sets():
    """The default for [-12, 0] is the softmax-fitted file, for [-1, 1] the exp-RMSE one; an objective
    asked for by name picks its own file."""
    from importlib import resources

    from sit_onnx.neurons.params import default_objective, shipped_name

    def file(name):
        text = (resources.files("sit_onnx.neurons") / "data" / name).read_text(encoding="utf-8")
        return params_from_json(text)

    assert default_objective((-12.0, 0.0)) == "softmax" and default_objective((-1.0, 1.0)) == "exp-rmse"
    assert shipped_name(8, (-12.0, 0.0), "softmax") == "softmax_k8_-12_0.json"
    assert shipped_name(8, (-1.0, 1.0)) == "si_exp_k8_-1_1.json"
    softmax, exp = file("softmax_k12_-12_0.json"), file("si_exp_k12_-12_0.json")
    assert softmax.thresholds != exp.thresholds
    assert shipped_params(12, (-12, 0)) == softmax == shipped_params(12, (-12, 0), "softmax")
    assert shipped_params(12, (-12, 0), "exp-rmse") == exp
    assert shipped_params(12, (-1, 1)) == file("si_exp_k12_-1_1.json")


def test_no_softmax_sets_ship_on_the_paper_range():
    with pytest.raises(SitOnnxError, match=r"fitted to softmax; shipped there: none \("):
        shipped_params(12, (-1, 1), "softmax")
