"""The numpy references at the edges the random-data tests do not reach: huge logits, rows of very
different scale, integer weights, the default spike count, the parameter file's layout."""

import json

import numpy as np

from sit_onnx.neurons import softmax
from sit_onnx.neurons.params import NeuronParams, load_params
from sit_onnx.neurons.si_norm import simulate_si_norm


def test_softmax_is_shifted_by_each_rows_own_max():
    x = np.array([[0.0, 1.0], [1000.0, 1001.0], [-1000.0, -999.0]])  # exp overflows or underflows unshifted
    expected = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(softmax(x), np.tile(expected, (3, 1)), rtol=1e-12)
    np.testing.assert_allclose(softmax(x.T, axis=0), np.tile(expected, (3, 1)).T, rtol=1e-12)


def test_simulated_si_norm_defaults_to_16_spikes_and_takes_integers():
    w = np.array([[1, 2, 5]])  # integer weights: the membrane must not be integer-truncated
    rate, count = simulate_si_norm(w)
    np.testing.assert_array_equal(count, np.floor(16 * w / 8))
    np.testing.assert_allclose(rate, count / 16)
    rate3, count3 = simulate_si_norm(np.array([[1.0, 1.0, 1.0]]), time_steps=3)
    np.testing.assert_array_equal(count3, [[1, 1, 1]])


def test_parameter_file_layout(tmp_path):
    params = NeuronParams([0.5, -0.5], [1.0, 0.5], [2.0, 1.0], (-1, 1), meta={"note": "x"})
    text = params.to_json()
    record = json.loads(text)
    assert text.endswith("}\n") and text.startswith('{\n  "format"')  # two-space indent, one record per file
    assert record["steps"] == 2 and record["input_range"] == [-1.0, 1.0]
    assert {"format", "version", "steps", "thresholds", "resets", "weights", "input_range"} <= set(record)
    path = tmp_path / "p.json"
    params.save(path)
    assert load_params(path).thresholds == params.thresholds and load_params(path).meta == {"note": "x"}
