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


def test_captured_rows_are_sampled_without_repeats_by_seed():
    from sit_onnx.neurons.objective import rows_from_logits

    logits = np.random.default_rng(2).normal(0, 3, (2, 4, 5))  # 8 distinct rows of 5 along axis -1
    every = rows_from_logits(logits, -1, limit=8)
    assert every.rows == 8 and every.source == "8 captured rows of length 5"
    some = rows_from_logits(logits, -1, limit=5)
    picked = np.sort(np.random.default_rng(0).choice(8, 5, replace=False))  # seed 0 by default
    flat = logits.reshape(8, 5).astype(np.float64)
    want = flat[picked] - flat[picked].max(axis=1, keepdims=True)
    np.testing.assert_allclose(some.x.reshape(5, 5), want)
    other = rows_from_logits(logits, -1, limit=5, seed=3)
    assert not np.array_equal(other.x, some.x)
    columns = rows_from_logits(logits, 1, limit=100)  # rows along axis 1: 10 rows of 4
    assert columns.rows == 10 and columns.source == "10 captured rows of length 4"


def test_unreadable_parameter_file_names_the_reason(tmp_path):
    import pytest

    from sit_onnx.errors import SitOnnxError

    with pytest.raises(SitOnnxError) as caught:
        load_params(tmp_path)
    assert str(caught.value) == f"{tmp_path}: a folder, where a JSON parameter set was expected"
    binary = tmp_path / "set.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(SitOnnxError) as caught:
        load_params(binary)
    assert str(caught.value) == f"{binary}: parameter file is not UTF-8 text (a JSON set is)"


def test_a_parameter_file_that_cannot_be_read_says_so_in_words(tmp_path, monkeypatch):
    from pathlib import Path

    import pytest

    from sit_onnx.errors import SitOnnxError

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)  # root reads any file: the refusal is simulated
    with pytest.raises(SitOnnxError) as caught:
        load_params(tmp_path / "set.json")
    assert str(caught.value) == f"{tmp_path / 'set.json'}: cannot read parameter file (permission denied)"
