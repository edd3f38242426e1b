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
    with pytest.raises(SitOnnxError, match="lacks weights"):
        params_from_json(json.dumps(record))


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
    assert point_weights(x, "relative").mean() == pytest.approx(1.0)
