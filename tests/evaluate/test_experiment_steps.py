"""The shared evaluation steps: model pairs, run_all's batching and progress, evaluate_outputs on
a converted model that lost an output, sample_feeds."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate import experiment
from sit_onnx.evaluate.datasets import LabelledData
from sit_onnx.evaluate.experiment import (
    ModelPair,
    evaluate_accuracy,
    evaluate_outputs,
    first_input_name,
    load_pair,
    run_all,
    sample_feeds,
)
from sit_onnx.graph.convert import RewriteOptions
from sit_onnx.runtime import SessionSpec, make_session
from tests.helpers import softmax_model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(softmax_model(["n", 5], -1), str(path))
    return path


def test_load_pair_three_ways(model_file, tmp_path):
    bare = load_pair(model_file, None, None)
    assert bare.converted is None and bare.report is None and bare.original.graph.node[0].op_type == "Softmax"
    converted = load_pair(model_file, None, RewriteOptions(steps=8))
    assert converted.report.input == str(model_file) and converted.report.steps == 8
    assert [n.domain for n in converted.converted.graph.node] == ["ai.sit"]
    onnx.save(converted.converted, str(tmp_path / "c.onnx"))
    given = load_pair(model_file, tmp_path / "c.onnx", RewriteOptions())
    assert given.report is None and [n.domain for n in given.converted.graph.node] == ["ai.sit"]


def test_first_input_skips_initializers_listed_as_inputs():
    model = softmax_model([2, 5], -1)
    model.graph.input.insert(0, helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
    model.graph.initializer.append(helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0]))
    assert first_input_name(model) == "x"
    del model.graph.input[1]
    with pytest.raises(SitOnnxError, match="^the model has no inputs to feed$"):
        first_input_name(model)


def test_run_all_batches_every_row_and_ticks_each_batch():
    session = make_session(softmax_model(["n", 5], -1), SessionSpec(use_library=False))
    x = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
    ticks = []
    out = run_all(session, {"x": x}, "mem", batch=4, tick=ticks.append)
    assert ticks == [4, 4, 2] and out["y"].shape == (10, 5)
    np.testing.assert_allclose(out["y"], np.exp(x) / np.exp(x).sum(1, keepdims=True), rtol=1e-5)
    assert run_all(session, {"x": x[:0]}, "mem", batch=4) == {}
    with pytest.raises(SitOnnxError, match=r"^data\.npz: lacks the model input 'x'"):
        run_all(session, {"z": x}, "data.npz", batch=4)


def test_evaluate_outputs_compares_exactly_and_refuses_a_lost_output():
    original = softmax_model(["n", 5], -1)
    data = LabelledData({"x": np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)}, None, "mem")
    ticks = []
    (same,) = evaluate_outputs(ModelPair(original, original, None), data, SessionSpec(), batch=4, tick=ticks.append)
    assert ticks == [4, 2, 4, 2]  # the original, then the converted model
    assert (same.name, same.max_abs, same.agreement) == ("y", 0.0, 1.0) and same.cosine == pytest.approx(1.0)
    renamed = onnx.ModelProto.FromString(original.SerializeToString())
    renamed.graph.node[0].output[0] = "z"
    renamed.graph.output[0].name = "z"
    with pytest.raises(SitOnnxError, match="^the converted model lacks the outputs y$"):
        evaluate_outputs(ModelPair(original, renamed, None), data, SessionSpec())
    twice = onnx.ModelProto.FromString(original.SerializeToString())
    twice.graph.node.append(helper.make_node("Identity", ["y"], ["y2"]))
    twice.graph.output.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["n", 5]))
    with pytest.raises(SitOnnxError, match="^the converted model lacks the outputs y, y2$"):
        evaluate_outputs(ModelPair(twice, renamed, None), data, SessionSpec())


def test_sample_feeds_takes_the_first_rows_and_checks_them():
    model = softmax_model(["n", 5], -1)
    x = np.arange(50, dtype=np.float64).reshape(10, 5)  # float64 data for a float32 input: converted
    feeds = sample_feeds(model, LabelledData({"x": x, "extra": x}, None, "mem"), count=3)
    assert list(feeds) == ["x"] and feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(feeds["x"], x[:3])
    assert sample_feeds(model, LabelledData({"x": x}, None, "mem"))["x"].shape == (10, 5)
    long = np.zeros((70, 5), np.float32)
    assert sample_feeds(model, LabelledData({"x": long}, None, "mem"))["x"].shape == (64, 5)  # 64 by default
    with pytest.raises(SitOnnxError, match=r"^src: 'x' has shape \[10\], the model wants rank 2"):
        sample_feeds(model, LabelledData({"x": x[:, 0]}, None, "src"))


def test_sample_feeds_keeps_a_fixed_batch_whole():
    """A model declared [4, 5] given 4 rows takes them whole whatever the count (cut to 3, `calibrate
    --samples 3` was refused: "'x' has shape [3, 5], the model wants [4, 5]", of a file holding
    [4, 5]); data of another length is cut as before (and run in batches of 4, batching.py); other
    dims are still checked."""
    model = softmax_model([4, 5], -1)
    x = np.arange(40, dtype=np.float32).reshape(8, 5)
    np.testing.assert_array_equal(sample_feeds(model, LabelledData({"x": x[:4]}, None, "mem"), count=3)["x"], x[:4])
    np.testing.assert_array_equal(sample_feeds(model, LabelledData({"x": x}, None, "mem"), count=3)["x"], x[:3])
    with pytest.raises(SitOnnxError, match=r"^mem: 'x' has shape \[3, 4\], the model wants \[4, 5\] \(axis 1\)$"):
        sample_feeds(model, LabelledData({"x": x[:, :4]}, None, "mem"), count=3)


def test_both_models_run_with_the_given_session_spec(monkeypatch):
    """`eval --provider`/`--no-library` reach the sessions of the original and of the converted model
    alike: a spec dropped for one of them would run it elsewhere than asked."""
    specs = []

    def recording(model, spec=SessionSpec()):
        specs.append(spec)
        return make_session(model, spec)

    monkeypatch.setattr(experiment, "make_session", recording)
    model = softmax_model(["n", 5], -1)
    x = np.random.default_rng(2).normal(size=(6, 5)).astype(np.float32)
    asked = SessionSpec(provider="cpu", use_library=False, verify_kernels=False)
    evaluate_outputs(ModelPair(model, model, None), LabelledData({"x": x}, None, "mem"), asked)
    evaluate_accuracy(ModelPair(model, model, None), LabelledData({"x": x}, np.zeros(6, np.int64), "mem"), asked)
    assert specs == [asked] * 4
