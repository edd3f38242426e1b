"""Malformed models a structural fuzzer made from valid ones (an attribute, a type, an opset or a
name changed): each used to end in "internal error" (onnx's SchemaError, an inliner assertion,
graphsurgeon's cycle exception, the checker's ValueError). Each now gets one line saying what is
wrong, or converts where the defect does not touch the rewrite."""

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from tests.graph.test_attention import _attention_model
from tests.helpers import softmax_model


def _refusal(model) -> str:
    with pytest.raises(SitOnnxError) as raised:
        rewrite_model(model, RewriteOptions())
    return str(raised.value)


def test_attention_at_an_opset_that_has_none_is_left_alone_and_says_so():
    model, _ = _attention_model(23)
    model.opset_import[0].version = 22  # ONNX's Attention arrived in opset 23
    assert _refusal(model) == (
        "model: no Softmax (nor Exp→ReduceSum→Div softmax) to convert; 1 attention op(s) left as they were "
        "(ONNX defines no Attention at the model's opset 22)"
    )


def test_attention_with_an_input_type_its_schema_lacks_is_left_alone_naming_the_types():
    model, _ = _attention_model(23)
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.UINT4  # onnx gives an empty body for it
    assert _refusal(model).endswith("(ONNX gives no expansion for these input types (Q: uint4, K: float, V: float))")


def test_attention_without_inputs_is_refused_in_one_line_not_an_inference_crash():
    model, _ = _attention_model(23)
    del model.graph.node[0].input[:]  # onnx's inference raises "Input 0 is out of bounds"
    message = _refusal(model)
    assert "internal error" not in message and "\n" not in message


def _with_unknown_op(model) -> onnx.ModelProto:
    """An op onnx does not know first: the checker stops at that (tolerated) complaint."""
    model.graph.node.insert(0, helper.make_node("Foo", ["x"], ["f"]))
    return model


def test_a_tensor_made_twice_is_refused_even_behind_an_unknown_op():
    model = _with_unknown_op(softmax_model([2, 4], -1))
    model.graph.node[0].output[0] = "y"  # Foo and the Softmax both write y: graphsurgeon saw a cycle
    assert _refusal(model) == "model: not a valid ONNX model (tensor 'y' is produced more than once)"
    model = _with_unknown_op(softmax_model([2, 4], -1))
    model.graph.node[0].output[0] = "x"  # writes the graph's own input
    assert _refusal(model) == "model: not a valid ONNX model (tensor 'x' is produced more than once)"


def test_a_cycle_behind_an_unknown_op_is_refused():
    model = _with_unknown_op(softmax_model([2, 4], -1))
    model.graph.node[1].input[0] = "w"  # the softmax reads a Relu that reads the softmax
    model.graph.node.append(helper.make_node("Relu", ["y"], ["w"]))
    assert _refusal(model) == (
        "model: not a valid ONNX model (a node reads a tensor that nothing produces, or the nodes form a cycle)"
    )


def test_a_cast_to_no_type_is_a_checker_note_not_a_crash(tmp_path):
    model = softmax_model([2, 4], -1)
    model.graph.node.append(helper.make_node("Cast", ["y"], ["z"], to=TensorProto.UNDEFINED))
    model.graph.output[0].name = "z"  # the full check's inference raised ValueError on it
    source, out = tmp_path / "m.onnx", tmp_path / "m.sit.onnx"
    onnx.save(model, str(source))
    result = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "the source model already fails onnx's checker" in result.output and out.exists()
