"""Malformed models a structural fuzzer made from valid ones (an attribute, a type, an opset or a
name changed): each used to end in "internal error" (onnx's SchemaError, an inliner assertion,
graphsurgeon's cycle exception, the checker's ValueError). Each now gets one line saying what is
wrong, or converts where the defect does not touch the rewrite."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.validate import check_source, checker_complaint, sorted_nodes, structural_complaint
from tests.graph.test_attention import HID, NH, _attention_inputs, _attention_model, _gqa_model, _mha_inputs, _ms_model
from tests.helpers import optimized_like_model, run, softmax_model


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
    assert "the source model already fails onnx's checker (Invalid tensor data type 0.)" in result.output
    assert out.exists()


def _set_attribute(model, name, value):
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + ([] if value is None else [helper.make_attribute(name, value)]))
    return model


def _reason(model) -> str:
    _, found = expand_attention(model, 17)
    assert [a.expanded for a in found] == [False]
    return found[0].reason


@pytest.mark.parametrize("count", [0, -100, None])
def test_head_counts_that_cannot_split_a_hidden_size_are_left_alone_with_why(count):
    """A head count of -100 made a complex scale (internal error: TypeError), 0 a division by zero."""
    rng = np.random.default_rng(0)
    for build in (
        lambda: _ms_model("Attention", _attention_inputs(rng), ("y",))[0],
        lambda: _ms_model("MultiHeadAttention", _mha_inputs(rng), ("y",))[0],
        lambda: _gqa_model(rng)[0],
    ):
        assert _reason(_set_attribute(build(), "num_heads", count)) == (
            f"num_heads is {count}; it must be a positive number of heads"
        )
    assert _reason(_set_attribute(_gqa_model(rng)[0], "kv_num_heads", count)) == (
        f"kv_num_heads is {count}; it must be a positive number of heads"
    )


def test_head_counts_that_do_not_divide_are_left_alone_with_why():
    rng = np.random.default_rng(0)
    assert _reason(_gqa_model(rng, heads=4, kv_heads=3)[0]) == "num_heads 4 is not a multiple of kv_num_heads 3"
    assert _reason(_set_attribute(_gqa_model(rng)[0], "num_heads", 3)) == (
        "num_heads 3 is not a multiple of kv_num_heads 2"
    )
    attention = _ms_model("Attention", _attention_inputs(rng), ("y",))[0]
    hidden = _attention_inputs(rng)[1][2][1] // 3  # the packed weights' width, three heads' worth
    assert (
        _reason(_set_attribute(attention, "num_heads", 5))
        == f"the query size {hidden} is not a multiple of num_heads 5"
    )
    uneven = _ms_model("Attention", _attention_inputs(rng), ("y",), qkv_hidden_sizes=[NH * 4, NH * 4, NH * 4 + 1])[0]
    assert _reason(uneven) == f"the value size {NH * 4 + 1} is not a multiple of num_heads {NH}"
    mha = _ms_model("MultiHeadAttention", _mha_inputs(rng), ("y",))[0]
    assert _reason(_set_attribute(mha, "num_heads", 5)) == f"the query size {HID} is not a multiple of num_heads 5"
    inputs = _mha_inputs(rng)
    name, elem, shape, value = inputs[2]
    inputs[2] = (name, elem, [*shape[:2], HID + 1], np.zeros((*value.shape[:2], HID + 1), np.float32))
    wide_value = _ms_model("MultiHeadAttention", inputs, ("y",))[0]
    assert _reason(wide_value) == f"the value size {HID + 1} is not a multiple of num_heads {NH}"


@pytest.mark.parametrize("to", [0, -100])
def test_a_cast_to_no_type_before_the_softmax_converts_with_the_checkers_note(to):
    """Cast(to=0) or to=-100 (the structural fuzzer's finds): onnx's checker lets the Cast through
    the graph walk and refuses the model; the logits' type, traced up to that Cast, ended in an
    internal error (KeyError) instead of the note that the source fails the checker."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["c"], to=to), helper.make_node("Softmax", ["c"], ["y"], axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1
    assert report.notes[0].startswith("the source model already fails onnx's checker")


def test_an_opset_the_converter_cannot_lift_is_refused_naming_the_file_and_why():
    """Below opset 13 the model goes through onnx's version converter; a node of a domain the model
    does not import stops it, and the refusal names the file, the opset and the converter's reason."""
    model = softmax_model(["b", 4], -1, opset=12)
    model.graph.node.insert(0, helper.make_node("Foo", ["x"], ["fx"], domain="x.y"))
    model.graph.node[1].input[0] = "fx"
    with pytest.raises(SitOnnxError) as raised:
        rewrite_model(model, RewriteOptions(), source="m.onnx")
    said = str(raised.value)  # the converter's own words vary with onnx's version
    assert said.startswith("m.onnx: unsupported opset 12: onnx cannot convert this model to opset 13 (")
    assert "domain x.y optype Foo" in said and "\n" not in said


def test_a_model_without_a_standard_opset_is_not_upgraded_from_opset_1():
    """Only ai.onnx.ml ops (a LabelEncoder, as skl2onnx writes for a text pipeline): nothing to
    convert, said as such; it read "unsupported opset 1: onnx cannot convert this model" before."""
    encoder = helper.make_node(
        "LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_strings=["a", "b"], values_int64s=[1, 2]
    )
    graph = helper.make_graph(
        [encoder],
        "ml",
        [helper.make_tensor_value_info("x", TensorProto.STRING, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 2)])
    assert _refusal(model) == "model: no Softmax (nor Exp→ReduceSum→Div softmax) to convert"
    assert [(o.domain, o.version) for o in model.opset_import] == [("ai.onnx.ml", 2)]  # the source is untouched


def test_the_default_domain_spelled_out_counts_as_a_standard_opset():
    model = softmax_model([2, 4], -1)
    model.opset_import[0].domain = "ai.onnx"
    new, report = rewrite_model(model, RewriteOptions())
    assert report.source_opset == 17 and not any("no standard opset" in n for n in report.notes)
    assert ("", 13) not in [(o.domain, o.version) for o in new.opset_import]


def test_a_fused_attention_model_without_a_standard_opset_is_converted_at_opset_13():
    rng = np.random.default_rng(0)
    model, feeds = _ms_model("MultiHeadAttention", _mha_inputs(rng), ["y"])
    del model.opset_import[0]  # com.microsoft alone: the expansion's standard ops need an opset
    new, report = rewrite_model(model, RewriteOptions())
    assert report.source_opset == report.opset == 13 and len(report.converted) == 1
    assert "the model imports no standard opset; opset 13 declared for what the rewrite adds" in report.notes
    assert ("", 13) in [(o.domain, o.version) for o in new.opset_import]
    reference, _ = _ms_model("MultiHeadAttention", _mha_inputs(np.random.default_rng(0)), ["y"])
    np.testing.assert_allclose(run(new, feeds)[0], run(reference, feeds)[0], atol=0.1)


def _chain(order) -> onnx.ModelProto:
    """x -> Relu -> a -> Neg -> b -> Softmax -> y, its nodes listed in `order` (indices of that chain)."""
    chain = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Neg", ["a"], ["b"], name="neg"),
        helper.make_node("Softmax", ["b"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        [chain[i] for i in order],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_source_with_its_nodes_out_of_order_is_put_in_order_and_checks_clean():
    """A float16 tool's output lists nodes out of order; onnxruntime sorts them itself, and so does
    check_source: the sorted model then passes the checker, so no complaint is kept or noted."""
    model = _chain([2, 1, 0])
    assert [n.name for n in sorted_nodes(model.graph)] == ["relu", "neg", "softmax"]
    checked = check_source(model, "m.onnx")
    assert (checked.full, checked.basic, checked.note) == (None, None, None)
    assert [n.name for n in model.graph.node] == ["relu", "neg", "softmax"]
    converted, _ = rewrite_model(_chain([1, 2, 0]), RewriteOptions())
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    assert run(converted, {"x": x})[0].shape == (2, 4)


def test_nodes_in_a_cycle_cannot_be_sorted_and_the_source_is_refused_with_the_checkers_words():
    model = _chain([2, 1, 0])
    model.graph.node[2].input[0] = "b"  # relu reads neg's output, neg reads relu's: a cycle
    assert sorted_nodes(model.graph) is None
    with pytest.raises(SitOnnxError, match=r"^m\.onnx: not a valid ONNX model \(Nodes in a graph must be topolog"):
        check_source(model, "m.onnx")
    sorts = _chain([2, 1, 0])
    sorts.graph.node[2].attribute.append(helper.make_attribute("bogus", 1.0))  # Relu has no such attribute
    with pytest.raises(SitOnnxError, match=r"^m\.onnx: not a valid ONNX model \(Unrecognized attribute: bogus"):
        check_source(sorts, "m.onnx")  # once sorted, the checker's next complaint


def test_a_node_with_an_omitted_input_sorts_and_one_reading_an_outer_tensor_needs_it():
    graph = _chain([1, 0, 2]).graph
    graph.node.append(helper.make_node("Clip", ["y", "", "m"], ["c"], name="clip"))  # "" is an omitted input
    assert sorted_nodes(graph) is None  # m: made by nothing here
    assert [n.name for n in sorted_nodes(graph, frozenset({"m"}))] == ["relu", "neg", "softmax", "clip"]


def _branch(nodes) -> onnx.GraphProto:
    out = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
    return helper.make_graph(nodes, "branch", [], [out])


def test_a_subgraphs_defects_are_found_and_named_by_their_owner():
    """The checker does not enter the subgraphs of an op it does not know; structural_complaint does,
    in a `g` attribute and in a `graphs` list, naming the attribute and its node (by name, else its
    first output, else its op type). What the outer graph makes or takes is visible inside."""
    twice = _branch([helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Neg", ["x"], ["t"])])
    reads_outer = _branch([helper.make_node("Add", ["x", "a"], ["s"])])  # x: the graph's input; a: made outside
    graph = _chain([0, 1, 2]).graph
    graph.node.append(helper.make_node("If", ["c"], ["o"], name="pick", then_branch=reads_outer, else_branch=twice))
    graph.input.append(helper.make_tensor_value_info("c", TensorProto.BOOL, []))
    made_twice = "tensor 't' is produced more than once"
    assert structural_complaint(graph) == f"{made_twice}, in the else_branch of If 'pick'"
    graph.node[-1].name = ""
    assert structural_complaint(graph) == f"{made_twice}, in the else_branch of If 'o'"
    del graph.node[-1].output[:]
    assert structural_complaint(graph) == f"{made_twice}, in the else_branch of If 'If'"
    del graph.node[-1]
    graph.node.append(helper.make_node("Foo", ["x"], ["f"], domain="vendor", bodies=[reads_outer, twice]))
    assert structural_complaint(graph) == f"{made_twice}, in the bodies of Foo 'f'"
    graph.node[-1].attribute[0].graphs.pop()
    assert structural_complaint(graph) is None  # the first body reads only outer tensors
    lost = _branch([helper.make_node("Add", ["x", "nowhere"], ["s"])])
    graph.node.append(helper.make_node("Bar", ["x"], ["g"], domain="vendor", body=lost))
    assert structural_complaint(graph) == (
        "a node reads a tensor that nothing produces, or the nodes form a cycle, in the body of Bar 'g'"
    )


@pytest.mark.parametrize(
    "name, outputs, domain, who",
    [("foo", ["z"], "", "foo"), ("", ["z"], "", "z"), ("", [], "ai.onnx", "Foo")],
)
def test_an_op_onnx_does_not_define_stops_the_opset_upgrade_in_words(name, outputs, domain, who):
    """A node of the default domain (either spelling) that ONNX has no schema for cannot be
    converted; onnx's converter says so as an unfilled template ("Op '%s' has no registered schema
    ...Foo1213"), so the refusal names the node (by its name, else its output, else its op) and the
    op instead."""
    model = softmax_model(["b", 4], -1, opset=12)
    model.graph.node.append(helper.make_node("Foo", ["y"], outputs, name=name, domain=domain))
    assert _refusal(model) == (
        f"model: unsupported opset 12: onnx cannot convert this model to opset 13 "
        f"(node {who!r} is a Foo, which ONNX does not define)"
    )


def test_an_undefined_op_inside_a_branch_is_found_too():
    model = softmax_model(["b", 4], -1, opset=12)
    branch = helper.make_graph(
        [helper.make_node("Bar", ["y"], ["t"], name="inner")],
        "b",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    model.graph.initializer.append(helper.make_tensor("c", TensorProto.BOOL, [], [True]))
    model.graph.node.append(helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch))
    assert _refusal(model).endswith("(node 'inner' is a Bar, which ONNX does not define)")


def test_a_source_failing_the_full_check_may_fail_it_otherwise_once_rewritten():
    """Two MatMuls of the wrong width: the source's full check names the first ('mm'); the rewritten
    model's names the second, since inference no longer gives the first its input's shape. The
    structure (the basic check) is sound, so the rewrite stands, with the source's failure noted."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.zeros(12))
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["y"], name="sm"),
            helper.make_node("MatMul", ["y", "w"], ["z"], name="mm"),
            helper.make_node("MatMul", ["x", "w"], ["z2"], name="mm2"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = rewrite_model(model, RewriteOptions())
    assert [s.name for s in report.converted] == ["sm"]
    assert report.notes == [
        "the source model already fails onnx's checker ([ShapeInferenceError] Inference error(s): (op_type:MatMul, "
        "node name: mm): [ShapeInferenceError] Incompatible dimensions for matrix multiplication); the rewrite was "
        "checked against it"
    ]
    assert "node name: mm2" in checker_complaint(new, full=True) and checker_complaint(new, full=False) is None


def test_a_node_spelling_the_default_domain_in_full_keeps_the_models_opset():
    """A node in domain "ai.onnx" where the model imports the default domain as "" (found by fuzzing
    an onnxruntime-optimized export, whose SimplifiedLayerNormalization the checker does not know, so
    it never reached the import check): graphsurgeon declared ("ai.onnx", 1) beside ("", 20), and
    onnxruntime read every standard op at opset 1 (the Cast's saturate unrecognised): the source
    ran, the rewrite did not load."""
    model = optimized_like_model()
    next(n for n in model.graph.node if n.name == "relu").domain = "ai.onnx"
    feeds = {"x": np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]], np.float32)}
    expected = run(model, feeds)[0]
    new, report = rewrite_model(model, RewriteOptions())
    assert [s.name for s in report.sites if s.converted] == ["sm"]
    assert [(o.domain, o.version) for o in new.opset_import] == [("", 20), ("ai.sit", 1)]
    assert [n.domain for n in new.graph.node if n.name == "relu"] == ["ai.onnx"]  # the node as it was
    np.testing.assert_allclose(run(new, feeds)[0], expected, atol=0.03)
