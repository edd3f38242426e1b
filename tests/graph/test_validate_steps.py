"""validate.py's small steps: best-effort inference (data propagation on, never stopped by one bad
annotation or type), how messages write dims, and a sorted source the full check still faults."""

import onnx
from onnx import TensorProto, helper

from sit_onnx.graph.load import default_opset
from sit_onnx.graph.validate import _dims, check_source, infer_shapes
from tests.graph.test_malformed_sources import _chain


def _reshaped_by_its_own_shape() -> onnx.ModelProto:
    """x [n, 12] reshaped to [Shape(x)[0], 3, 4], as exporters spell a head split: only data
    propagation gives r its dims."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "first"], ["b"], axis=0),
        helper.make_node("Concat", ["b", "tail"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            helper.make_tensor("first", TensorProto.INT64, [1], [0]),
            helper.make_tensor("tail", TensorProto.INT64, [2], [3, 4]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _inferred_dims(model, name):
    info = next(v for v in infer_shapes(model).graph.value_info if v.name == name)
    return [d.dim_value or d.dim_param for d in info.type.tensor_type.shape.dim]


def test_inference_propagates_shape_values():
    assert _inferred_dims(_reshaped_by_its_own_shape(), "r") == ["n", 3, 4]


def test_inference_goes_on_past_a_wrong_annotation_and_a_wrong_type():
    stale = _reshaped_by_its_own_shape()
    stale.graph.value_info.append(helper.make_tensor_value_info("s", TensorProto.INT64, [5]))  # x has rank 2
    assert _inferred_dims(stale, "r")[1:] == [3, 4]
    mistyped = _reshaped_by_its_own_shape()
    tail = mistyped.graph.initializer[1]
    tail.CopyFrom(helper.make_tensor("tail", TensorProto.INT32, [2], [3, 4]))  # Concat of int64 and int32
    assert _inferred_dims(mistyped, "r") == ["n", 3, 4]


def test_messages_write_named_dims_by_name_and_unknown_ones_as_a_question_mark():
    kind = helper.make_tensor_type_proto(TensorProto.FLOAT, [2, "batch", "unk__7", None])
    assert _dims(kind) == "[2, batch, ?, ?]"


def test_a_sorted_source_that_only_the_full_check_faults_is_noted_not_refused():
    """Once its nodes are in order, the basic check passes; the full check's shape complaint is kept
    as the source's, to judge the rewrite against (not a refusal)."""
    model = _chain([2, 1, 0])
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5  # the softmax makes [2, 4]
    checked = check_source(model, "m.onnx")
    assert checked.basic is None and "Inferred shape and existing shape differ" in checked.full


def test_the_default_domains_opset_by_either_spelling_and_1_when_not_imported():
    model = _chain([0, 1, 2])
    assert default_opset(model) == 17
    model.opset_import[0].domain = "ai.onnx"
    assert default_opset(model) == 17
    model.opset_import[0].domain = "vendor"
    assert default_opset(model) == 1
