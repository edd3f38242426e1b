"""Reading a model's intermediate tensors: they come back beside its outputs, from a session made as asked."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from sit_onnx.evaluate import capture as capture_module
from sit_onnx.evaluate.capture import capture, with_outputs
from sit_onnx.runtime import SessionSpec
from tests.helpers import record_session_specs


def _relu_neg():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_named_tensors_come_back_with_the_outputs_from_the_session_asked_for(monkeypatch):
    specs = record_session_specs(monkeypatch, capture_module)
    x = np.array([[-1.0, 0.0, 2.0], [3.0, -4.0, 0.5]], np.float32)
    spec = SessionSpec(provider="cpu", threads=1, verify_kernels=False)
    values = capture(_relu_neg(), ["h"], {"x": x}, spec)
    assert specs == [spec]
    assert sorted(values) == ["h", "y"]
    np.testing.assert_array_equal(values["h"], np.maximum(x, 0))
    np.testing.assert_array_equal(values["y"], -np.maximum(x, 0))


def test_an_output_asked_for_is_not_added_twice_and_the_model_is_left_alone():
    model = _relu_neg()
    copy = with_outputs(model, ["y", "h"])
    assert [o.name for o in copy.graph.output] == ["y", "h"]
    assert [o.name for o in model.graph.output] == ["y"]


@pytest.mark.parametrize("names", [[], ["x"]])
def test_a_graph_input_or_nothing_asked_for_still_runs(names):
    x = np.ones((1, 3), np.float32)
    values = capture(_relu_neg(), names, {"x": x})
    assert set(values) == {"y", *names}
