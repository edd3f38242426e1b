"""onnxruntime's symbolic inference as sit-onnx runs it (sit_onnx/graph/symbolic.py): what it keeps
when it stops part way, and that it prints nothing of its own."""

import logging

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

from sit_onnx.graph.symbolic import symbolic_types

MS = "com.microsoft"


def _dims(kind):
    return [d.dim_value or d.dim_param for d in kind.tensor_type.shape.dim]


def _chain(*nodes, opset=17):
    """x [b, s, 16] -> nodes -> y; w a [16, 8] weight."""
    w = numpy_helper.from_array(np.ones((16, 8), np.float32), "w")
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])


def test_onnxruntimes_own_ops_are_typed_through():
    model = _chain(
        helper.make_node("FastGelu", ["x"], ["g"], domain=MS),
        helper.make_node("MatMul", ["g", "w"], ["y"]),
    )
    found = symbolic_types(model, guess=False)
    assert _dims(found["g"]) == ["b", "s", 16] and _dims(found["y"]) == ["b", "s", 8]


def test_where_it_fails_the_types_before_the_op_stay_and_the_ops_own_go(monkeypatch):
    """An op that fails after typing its output (MatMul here, made to): that half-made type is not
    kept, what came before is."""
    typed_then_failed = SymbolicShapeInference._infer_MatMul

    def failing(self, node):
        typed_then_failed(self, node)
        raise AssertionError("made to fail")

    monkeypatch.setattr(SymbolicShapeInference, "_infer_MatMul", failing)
    model = _chain(
        helper.make_node("FastGelu", ["x"], ["g"], domain=MS),
        helper.make_node("MatMul", ["g", "w"], ["m"]),
        helper.make_node("Relu", ["m"], ["y"]),
    )
    found = symbolic_types(model, guess=False)
    assert _dims(found["g"]) == ["b", "s", 16]
    assert "m" not in found and "y" not in found


def test_an_op_nobody_knows_stops_it():
    model = _chain(
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Mystery", ["r"], ["y"], domain="my.ops"),
    )
    model.opset_import.append(helper.make_opsetid("my.ops", 1))
    found = symbolic_types(model, guess=False)
    assert _dims(found["r"]) == ["b", "s", 16] and "y" not in found


def test_what_it_cannot_decide_is_not_printed(capfd, caplog):
    """A Slice from 1 - a (a the batch): onnxruntime's inference logs "Cannot determine if 1 - a < 0",
    which Python printed on the user's stderr in the middle of a rewrite (no logging configured:
    its last-resort handler; under pytest, caplog holds the record instead)."""
    numbers = [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("one", 1), ("zero", 0), ("end", 99))]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["a"], axis=0),
        helper.make_node("Sub", ["one", "a"], ["start"]),
        helper.make_node("Slice", ["x", "start", "end", "zero"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        numbers,
    )
    found = symbolic_types(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), guess=False)
    assert _dims(found["y"])[1] == 16
    assert capfd.readouterr() == ("", "")
    assert not [r for r in caplog.records if r.name.startswith("onnxruntime")]
    assert not logging.getLogger("onnxruntime.tools.symbolic_shape_infer").disabled  # given back after the run


def test_a_failure_before_any_node_gives_nothing_without_an_error(monkeypatch):
    """Where it fails before its first node (in its preprocessing) no node's outputs are to drop."""

    def failing(self, model):
        raise RuntimeError("made to fail")

    monkeypatch.setattr(SymbolicShapeInference, "_preprocess", failing)
    assert symbolic_types(_chain(helper.make_node("Relu", ["x"], ["y"])), guess=False) == {}


def test_types_of_keeps_typed_tensors_only():
    from sit_onnx.graph.symbolic import types_of

    model = _chain(helper.make_node("Relu", ["x"], ["y"]))
    model.graph.value_info.append(helper.make_tensor_value_info("untyped", TensorProto.UNDEFINED, None))
    model.graph.value_info.append(helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, None))
    found = types_of(model)
    assert set(found) == {"x", "y", "w"} and _dims(found["w"]) == [16, 8]
