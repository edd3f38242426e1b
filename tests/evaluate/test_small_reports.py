"""Small report pieces at their edges: empty data, non-numeric and non-finite outputs, error texts."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sit_onnx.cli.run import summarise_output
from sit_onnx.errors import SitOnnxError, first_line
from sit_onnx.evaluate.accuracy import accuracy_report, predict
from sit_onnx.evaluate.inputs import load_arrays
from sit_onnx.graph.report import RewriteReport, SiteReport, attention_summary


def test_accuracy_of_no_samples_is_zero_not_nan():
    empty = np.zeros(0, np.int64)
    report = accuracy_report(empty, empty, empty)
    assert (report.samples, report.ann_accuracy, report.converted_accuracy, report.agreement) == (0, 0.0, 0.0, 0.0)
    assert accuracy_report(empty, empty, None).converted_accuracy is None


def test_accuracy_figures():
    labels, ann, conv = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0]), np.array([0, 2, 2, 0])
    report = accuracy_report(labels, ann, conv)
    assert (report.ann_accuracy, report.converted_accuracy, report.agreement) == (0.75, 0.5, 0.75)
    assert report.loss_points == pytest.approx(25.0)


def _identity_session(shape):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_predict_in_batches_and_on_no_rows():
    session = _identity_session(["n", 3])
    x = np.random.default_rng(0).normal(size=(600, 3)).astype(np.float32)
    np.testing.assert_array_equal(predict(session, {"x": x}, "mem"), x.argmax(1))
    np.testing.assert_array_equal(predict(session, {"x": x}, "mem", batch=7), x.argmax(1))
    none = predict(session, {"x": x[:0]}, "mem")
    assert none.shape == (0,) and none.dtype == np.int64


def test_a_first_output_of_labels_is_the_prediction():
    """A classifier with its ArgMax in the graph (or a label output first, as skl2onnx writes it)."""
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(predict(session, {"x": x}, "mem", batch=16), x.argmax(1))
    floats = _identity_session(["n"])  # one float per row: no label, no classes
    with pytest.raises(SitOnnxError, match=r"has shape \[4\]; accuracy needs"):
        predict(floats, {"x": np.zeros(4, np.float32)}, "mem")


def test_predict_refuses_logits_that_are_not_batch_by_classes():
    session = _identity_session(["n", 2, 3])
    x = np.zeros((2, 2, 3), np.float32)
    message = "the model's first output has shape [2, 2, 3]; accuracy needs (batch, classes) logits"
    message += " or (batch,) integer labels"
    with pytest.raises(SitOnnxError) as raised:
        predict(session, {"x": x}, "mem")
    assert str(raised.value) == message
    with pytest.raises(SitOnnxError, match=r"^data\.npz: lacks the model input 'x' \(has y\)$"):
        predict(session, {"y": x}, "data.npz")


def test_summarise_numeric_non_finite_and_non_numeric_outputs():
    assert summarise_output("a", np.array([1.0, np.nan, -np.inf, 3.0, np.inf], np.float32)) == {
        "name": "a", "shape": [5], "dtype": "float32", "min": 1.0, "max": 3.0, "mean": 2.0, "nan": 1, "inf": 2
    }  # fmt: skip
    assert summarise_output("b", np.full((2, 2), np.nan)) == {
        "name": "b", "shape": [2, 2], "dtype": "float64", "min": None, "max": None, "mean": None, "nan": 4, "inf": 0
    }  # fmt: skip
    assert summarise_output("s", np.array(["x", "y"])) == {
        "name": "s", "shape": [2], "dtype": "<U1", "min": None, "max": None, "mean": None, "nan": 0, "inf": 0
    }  # fmt: skip
    assert summarise_output("e", np.zeros((0, 3), np.int64))["shape"] == [0, 3]
    assert summarise_output("i", np.array([2, 4], np.int64))["mean"] == 3.0


def test_first_line_strips_onnxruntime_prefix_and_falls_back_to_the_type():
    exc = RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model failed\nstack trace line")
    assert first_line(exc) == "1 : FAIL : Load model failed"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("  \n")) == "ValueError"


def test_unreadable_npz_names_the_reason(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(
        SitOnnxError, match=r"bad\.npz: not a readable \.npz file \(BadZipFile: File is not a zip file\)$"
    ):
        load_arrays(path)
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(
        SitOnnxError, match=r"objects\.npz: holds an object array \(pickled Python objects\), which is not read$"
    ):
        load_arrays(pickled)
    single = tmp_path / "single.npz"
    with single.open("wb") as f:  # an .npy under an .npz name
        np.save(f, np.zeros(3))
    with pytest.raises(SitOnnxError, match=r"single\.npz: expected an \.npz archive of named arrays, got a single"):
        load_arrays(single)
    (tmp_path / "plain.npz").write_text("x,y\n1,2\n")
    with pytest.raises(
        SitOnnxError, match=r"plain\.npz: not an \.npz file \(it does not start as a zip archive does\)$"
    ):
        load_arrays(tmp_path / "plain.npz")


def test_report_dict_counts_and_attention_summary():
    report = RewriteReport(None, None, 17, 17, 12, "p", {})
    report.sites = [
        SiteReport("a", "main", "Softmax", -1, "", True),
        SiteReport("b", "main", "Softmax", -1, "", False, reason="r"),
        SiteReport("c", "main", "Softmax", -1, "", False, reason="r"),
    ]
    record = json.loads(json.dumps(report.to_dict()))
    assert (record["converted_count"], record["skipped_count"]) == (1, 2)
    left = [{"reason": "b why"}, {"reason": "a why"}, {"reason": "b why"}]
    assert attention_summary(left) == "3 attention op(s) left as they were (a why; b why)"


def test_predict_refuses_a_first_output_without_a_row_per_input_row():
    """A table the model holds, [2, 2] whatever the batch: its argmax was compared with 5 labels and
    died ("operands could not be broadcast together")."""
    from onnx import TensorProto, helper

    table = helper.make_tensor("T", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])
    nodes = [helper.make_node("Identity", ["T"], ["y"]), helper.make_node("Softmax", ["x"], ["p"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("y", [2, 2]), ("p", ["n", 3]))]
    model = helper.make_model(helper.make_graph(nodes, "t", [x], outputs, [table]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(SitOnnxError, match=r"^the model's first output has shape \[2, 2\] for 5 rows; accuracy needs"):
        predict(session, {"x": np.zeros((5, 3), np.float32)}, "mem")
    assert predict(session, {"x": np.zeros((2, 3), np.float32)}, "mem").tolist() == [1, 1]  # as many: taken


def test_predict_names_the_data_when_onnxruntime_fails_on_it():
    """A graph that takes its declared shape but not these rows (a Reshape needing four at a time)."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "four"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, None])],
        [helper.make_tensor("four", TensorProto.INT64, [2], [4, -1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(SitOnnxError) as error:
        predict(session, {"x": np.zeros((3, 2), np.float32)}, "rows.npz")
    assert str(error.value).startswith("rows.npz: onnxruntime failed to run the model: ")
