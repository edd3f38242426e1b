"""An attribute typed otherwise than its op's schema declares is refused in one line, naming the
node, the attribute and both types: the site search read a Softmax's axis given as floats, or a
GroupQueryAttention's num_heads given as a string, as numbers and died with an internal error
(found by fuzzing attribute types over the bench's exports and the node tests)."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.attribute_types import mistyped_attribute
from sit_onnx.graph.convert import RewriteOptions, find_canonical_sites, rewrite_model
from tests.graph.test_attention import _gqa_model
from tests.helpers import chain_model, softmax_model

A = onnx.AttributeProto


def _retyped(model, node_index, name, value, kind=None):
    node = model.graph.node[node_index]
    for found in list(node.attribute):
        if found.name == name:
            node.attribute.remove(found)
    node.attribute.append(helper.make_attribute(name, value, attr_type=kind))
    return model


def _refusal(model) -> str:
    with pytest.raises(SitOnnxError) as raised:
        rewrite_model(model, RewriteOptions())
    return str(raised.value)


def test_a_softmax_axis_given_as_floats_is_refused_naming_both_types():
    model = _retyped(softmax_model([2, 3]), 0, "axis", [], A.FLOATS)
    assert _refusal(model) == "model: node 'sm' gives its Softmax attribute 'axis' as FLOATS, where the op takes INT"
    with pytest.raises(SitOnnxError, match="'axis' as FLOATS"):
        find_canonical_sites(model)  # every command's site search: the same refusal


def test_an_onnxruntime_ops_attribute_is_checked_against_onnxruntimes_schema():
    model, _ = _gqa_model(np.random.default_rng(0))
    index = next(i for i, n in enumerate(model.graph.node) if n.op_type == "GroupQueryAttention")
    model = _retyped(model, index, "num_heads", b"\xff\xfe")
    label = model.graph.node[index].name or model.graph.node[index].output[0]
    assert _refusal(model) == (
        f"model: node {label!r} gives its GroupQueryAttention attribute 'num_heads' as STRING, where the op takes INT"
    )


def test_a_mistyped_attribute_inside_a_branch_is_found():
    inner = helper.make_node("Softmax", ["x"], ["q"], name="inner", axis=1.5)
    branch = helper.make_graph([inner], "then", [], [helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("c", 9, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    said = mistyped_attribute(model)
    assert said == "node 'inner' gives its Softmax attribute 'axis' as FLOAT, where the op takes INT"


def _sum_over(opset, axes):
    """Exp -> ReduceSum(axes attribute) -> Div at `opset`."""
    nodes = [
        helper.make_node("Exp", ["x"], ["e"]),
        helper.make_node("ReduceSum", ["e"], ["s"], name="sum", keepdims=1, axes=axes),
        helper.make_node("Div", ["e", "s"], ["y"]),
    ]
    return chain_model(nodes, opset=opset)


def test_the_schema_is_the_one_of_the_models_opset():
    """ReduceSum took its axes as an INTS attribute until opset 13, then as an input: floats there
    are mistyped at opset 11; at opset 13 the schema declares no such attribute (the checker's to say)."""
    assert mistyped_attribute(_sum_over(11, [1])) is None
    assert mistyped_attribute(_sum_over(11, [1.0])) == (
        "node 'sum' gives its ReduceSum attribute 'axes' as FLOATS, where the op takes INTS"
    )
    assert mistyped_attribute(_sum_over(13, [1.0])) is None
    spelled_out = _sum_over(11, [1.0])
    spelled_out.opset_import[0].domain = "ai.onnx"  # the default domain by its full name: the same opset
    assert "as FLOATS, where the op takes INTS" in mistyped_attribute(spelled_out)
    spelled_out.opset_import[0].version = 13
    assert mistyped_attribute(spelled_out) is None


def test_attributes_no_schema_declares_are_not_this_checks_business():
    """A custom op's attributes, and an attribute a standard op does not declare, are not refused."""
    model = softmax_model([2, 3], axis=1)
    model.graph.node[0].attribute.append(helper.make_attribute("note", 2.5))
    custom = helper.make_node("Custom", ["x"], ["u"], domain="my.domain", axis=[1.0, 2.0], num_heads="four")
    model.graph.node.append(custom)
    model.graph.output.append(helper.make_tensor_value_info("u", TensorProto.FLOAT, None))
    model.opset_import.append(helper.make_opsetid("my.domain", 1))
    assert mistyped_attribute(model) is None
    _, report = rewrite_model(model, RewriteOptions())
    assert [s.name for s in report.sites if s.converted] == ["sm"]


def test_rewrite_command_refuses_in_one_line_and_writes_nothing(tmp_path):
    source, out = tmp_path / "m.onnx", tmp_path / "m.sit.onnx"
    onnx.save(_retyped(softmax_model([2, 3]), 0, "axis", "last"), str(source))
    result = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(out)])
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr.strip() == (
        f"Error: {source}: node 'sm' gives its Softmax attribute 'axis' as STRING, where the op takes INT"
    )
