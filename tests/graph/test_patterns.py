"""Softmax written out by hand, and softmax inside subgraphs."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.sites import DECOMPOSED, DECOMPOSED_SHIFTED
from sit_onnx.neurons import SoftmaxOptions, load_params, spiking_softmax
from tests.helpers import run, softmax_model, spiking_ops


def _decomposed_model(axis, with_max, opset=18):
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [axis])
    nodes = []
    logits = "x"
    if with_max:
        nodes += [
            helper.make_node("ReduceMax", ["x", "axes"], ["m"], keepdims=1),
            helper.make_node("Sub", ["x", "m"], ["shifted"]),
        ]
        logits = "shifted"
    nodes += [
        helper.make_node("Exp", [logits], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
        helper.make_node("Div", ["e", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5])],
        [axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("with_max, pattern", [(False, DECOMPOSED), (True, DECOMPOSED_SHIFTED)])
@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("fuse", [None, False])
def test_hand_written_softmax_replaced(params_file, rng, axis, with_max, pattern, shift, fuse):
    options = RewriteOptions(params_file=params_file, shift=shift, fuse=fuse)
    new, report = rewrite_model(_decomposed_model(axis, with_max), options)
    onnx.checker.check_model(new, full_check=True)
    assert [s.pattern for s in report.sites] == [pattern]
    assert not {"Exp", "ReduceSum", "Div"} & set(report.ops_after)
    assert report.ops_after.get("ReduceMax", 0) == (1 if shift and fuse is False else 0)  # fused: inside the op
    x = rng.normal(0, 3, (3, 4, 5)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), axis=axis, options=SoftmaxOptions(shift=shift))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_exp_with_other_consumers_is_left_alone(params_file):
    model = _decomposed_model(-1, False)
    model.graph.node.append(helper.make_node("Identity", ["e"], ["e_out"]))
    model.graph.output.append(helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [3, 4, 5]))
    with pytest.raises(Exception, match="no Softmax"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def _if_model(opset=17):
    def branch(name, op):
        node = helper.make_node(
            op, ["x"], [f"{name}_y"], name=f"{name}_softmax", **({"axis": -1} if op == "Softmax" else {})
        )
        return helper.make_graph(
            [node], name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [2, 6])]
        )

    node = helper.make_node(
        "If", ["cond"], ["y"], then_branch=branch("then", "Softmax"), else_branch=branch("else", "Relu")
    )
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_softmax_inside_if_branch(params_file, rng):
    new, report = rewrite_model(_if_model(), RewriteOptions(params_file=params_file))
    onnx.checker.check_model(new, full_check=True)
    assert [(s.name, s.graph, s.converted) for s in report.sites] == [("then_softmax", "then", True)]
    assert report.ops_after["ai.sit::SpikingSoftmax"] == 1 and "Softmax" not in report.ops_after
    x = rng.normal(0, 3, (2, 6)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"cond": np.array(True), "x": x})[0], expected, atol=1e-6)
    np.testing.assert_allclose(run(new, {"cond": np.array(False), "x": x})[0], np.maximum(x, 0))


def _two_softmax_model():
    nodes = [
        helper.make_node("Softmax", ["x"], ["a"], name="first", axis=-1),
        helper.make_node("Softmax", ["a"], ["y"], name="second", axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "options, converted",
    [({"first": 1}, ["first"]), ({"first": 0}, []), ({"nodes": ("second",)}, ["second"]), ({}, ["first", "second"])],
)
def test_site_selection(params_file, options, converted):
    new, report = rewrite_model(_two_softmax_model(), RewriteOptions(params_file=params_file, **options))
    assert [s.name for s in report.converted] == converted
    assert report.ops_after.get("Softmax", 0) == 2 - len(converted)
    assert all(s.reason for s in report.skipped)
    assert spiking_ops(new).count("SpikingSoftmax") == len(converted)


def test_unknown_node_name_lists_sites(params_file):
    with pytest.raises(Exception, match="no softmax site named nope; sites are: first, second"):
        rewrite_model(_two_softmax_model(), RewriteOptions(params_file=params_file, nodes=("nope",)))


def test_rewrite_twice_converts_the_rest(params_file):
    once, _ = rewrite_model(_two_softmax_model(), RewriteOptions(params_file=params_file, first=1))
    twice, report = rewrite_model(once, RewriteOptions(params_file=params_file))
    assert [s.name for s in report.sites] == ["second"] and spiking_ops(twice).count("SpikingSoftmax") == 2
    assert sum(f.domain == "ai.sit" for f in twice.functions) == 3  # SpikingExp, SpikingNorm, SpikingSoftmax
    onnx.checker.check_model(twice, full_check=True)


def test_inline_leaves_only_standard_ops(params_file, rng):
    functions, _ = rewrite_model(_two_softmax_model(), RewriteOptions(params_file=params_file))
    inlined, report = rewrite_model(_two_softmax_model(), RewriteOptions(params_file=params_file, inline=True))
    onnx.checker.check_model(inlined, full_check=True)
    assert report.inlined and not inlined.functions and not spiking_ops(inlined)
    assert all(o.domain != "ai.sit" for o in inlined.opset_import)
    names = [n.name for n in inlined.graph.node]
    assert all(names) and len(set(names)) == len(names)  # every node named, once (tools refuse otherwise)
    assert all(n.name for f in functions.functions for n in f.node)
    x = rng.normal(0, 3, (3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(inlined, {"x": x})[0], run(functions, {"x": x})[0])


def test_caller_model_unchanged_and_weights_kept(params_file, rng):
    from onnx import numpy_helper

    weight = numpy_helper.from_array(rng.normal(size=(32, 32)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=-1, name="sm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    new, _ = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert model.SerializeToString() == before
    assert [i.name for i in new.graph.input] == [
        "x"
    ]  # large weights set aside during the pass come back as initializers
    np.testing.assert_array_equal(numpy_helper.to_array(new.graph.initializer[0]), numpy_helper.to_array(weight))
    x = rng.normal(size=(2, 32)).astype(np.float32)
    expected = spiking_softmax(
        x @ numpy_helper.to_array(weight), load_params(params_file), options=SoftmaxOptions(shift=True)
    )
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-5)
    again = onnx.ModelProto()
    again.CopyFrom(model)
    converted, _ = rewrite_model(again, RewriteOptions(params_file=params_file), in_place=True)
    assert converted is again  # rewrite_file's way: no copy of a large model (the result is the argument)
    assert converted.SerializeToString() == new.SerializeToString()


def test_softmax_inside_scan_body(params_file, rng):
    body = helper.make_graph(
        [helper.make_node("Softmax", ["row"], ["row_out"], name="scan_softmax", axis=-1)],
        "scan_body",
        [helper.make_tensor_value_info("row", TensorProto.FLOAT, [5])],
        [helper.make_tensor_value_info("row_out", TensorProto.FLOAT, [5])],
    )
    node = helper.make_node("Scan", ["x"], ["y"], num_scan_inputs=1, body=body)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    onnx.checker.check_model(new, full_check=True)
    assert [(s.name, s.graph, s.converted) for s in report.sites] == [("scan_softmax", "scan_body", True)]
    x = rng.normal(0, 3, (4, 5)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), axis=-1, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_softmax_inside_a_model_local_function(params_file, rng):
    attention = helper.make_function(
        "custom.modules",
        "Attention",
        ["s"],
        ["p"],
        [helper.make_node("Softmax", ["s"], ["p"], axis=-1)],
        [helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        [helper.make_node("Attention", ["x"], ["y"], domain="custom.modules", name="attn")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
    )
    model = helper.make_model(
        graph,
        functions=[attention],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.modules", 1)],
    )
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    onnx.checker.check_model(new, full_check=True)
    assert len(report.converted) == 1 and any("inlined 1 model-local function" in n for n in report.notes)
    assert all(f.domain == "ai.sit" for f in new.functions)
    x = rng.normal(0, 3, (3, 6)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_every_function_inlined_is_named(params_file):
    """Two model-local functions, each holding a softmax: both are inlined, and the note names each."""
    bodies = [
        helper.make_function("custom.modules", name, ["s"], ["p"], [node], [helper.make_opsetid("", 17)])
        for name, node in (
            ("SelfAttention", helper.make_node("Softmax", ["s"], ["p"], axis=-1)),
            ("Router", helper.make_node("Softmax", ["s"], ["p"], axis=0)),
        )
    ]
    graph = helper.make_graph(
        [
            helper.make_node("SelfAttention", ["x"], ["h"], domain="custom.modules"),
            helper.make_node("Router", ["h"], ["y"], domain="custom.modules"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("custom.modules", 1)]
    model = helper.make_model(graph, functions=bodies, opset_imports=opsets)
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert len(report.converted) == 2
    assert "inlined 2 model-local function(s) to reach the softmax inside: SelfAttention, Router" in report.notes


def test_shape_annotations_stay_as_the_source_had_them(params_file):
    """The shapes inferred while rewriting are not written out: onnxruntime would optimise the
    converted model differently from its original (it fuses more where it knows more shapes)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Add", ["r", "x"], ["a"]),
        helper.make_node("Softmax", ["a"], ["y"], axis=-1),
    ]
    noted = helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        value_info=[noted],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, _ = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert list(new.graph.value_info) == [noted]  # "a" and the new tensors get no inferred annotation


def _edit(model, **changes):
    """A copy of a decomposed model with node attributes or inputs changed by node output name."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for node in model.graph.node:
        for attr_name, value in changes.get(node.output[0], {}).items():
            if attr_name == "inputs":
                del node.input[:]
                node.input.extend(value)
            else:
                kept = [a for a in node.attribute if a.name != attr_name]
                del node.attribute[:]
                node.attribute.extend([*kept, helper.make_attribute(attr_name, value)])
    return model


@pytest.mark.parametrize(
    "edit, reason",
    [
        ({"s": {"keepdims": 0}}, "has keepdims=0"),
        ({"s": {"inputs": ["e"]}}, "reduces over every axis"),
        ({"s": {"inputs": ["e", "axes_in"]}}, "takes its axes from a tensor that is not constant"),
        ({"y": {"inputs": ["e", "s2"]}}, "does not divide the Exp's own output"),
    ],
    ids=["keepdims0", "all-axes", "dynamic-axes", "other-divisor"],
)
def test_near_misses_are_refused_with_their_reason(params_file, edit, reason):
    model = _edit(_decomposed_model(-1, False), **edit)
    if "axes_in" in str(edit):
        model.graph.input.append(helper.make_tensor_value_info("axes_in", TensorProto.INT64, [1]))
    if "s2" in str(edit):  # the sum passes through an Identity before the division
        model.graph.node.insert(len(model.graph.node) - 1, helper.make_node("Identity", ["s"], ["s2"]))
    with pytest.raises(Exception, match=f"no Softmax.*Exp 'exp' is no softmax site: .*{reason}"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def test_exp_with_a_third_consumer_is_a_near_miss_in_the_report(params_file):
    model = _two_site_model_with_near_miss()
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert [s.name for s in report.converted] == ["sm"]
    assert report.near_misses == [
        {
            "name": "exp",
            "graph": "main",
            "reason": "its output has 3 consumers; a softmax's Exp feeds a ReduceSum and a Div",
            "op": "Exp",
        }
    ]
    assert "Exp" in report.ops_after and "Div" in report.ops_after  # left as it was


def _two_site_model_with_near_miss():
    model = _decomposed_model(-1, False)
    model.graph.node.append(helper.make_node("Identity", ["e"], ["e_out"]))
    model.graph.node.append(helper.make_node("Softmax", ["x"], ["z"], name="sm", axis=-1))
    for name in ("e_out", "z"):
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [3, 4, 5]))
    return model


def test_reduce_max_over_another_axis_is_not_taken_as_the_shift(params_file, rng):
    """Exp(x - ReduceMax(x, axis 0)) / ReduceSum(axis -1): the sum's site, without the foreign max."""
    model = _decomposed_model(-1, True)
    model.graph.initializer.append(helper.make_tensor("axes0", TensorProto.INT64, [1], [0]))
    model.graph.node[0].input[1] = "axes0"
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert report.sites[0].pattern == DECOMPOSED  # the Sub stays; only Exp/ReduceSum/Div are replaced
    assert report.ops_after.get("ReduceMax") == 1 and report.ops_after.get("Sub") == 1
    x = rng.normal(0, 3, (3, 4, 5)).astype(np.float32)
    shifted = x - x.max(axis=0, keepdims=True)
    expected = spiking_softmax(shifted, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_reduce_max_with_a_second_consumer_stays(params_file):
    model = _decomposed_model(-1, True)
    model.graph.node.append(helper.make_node("Identity", ["m"], ["m_out"]))
    model.graph.output.append(helper.make_tensor_value_info("m_out", TensorProto.FLOAT, [3, 4, 1]))
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert report.sites[0].pattern == DECOMPOSED and report.ops_after.get("ReduceMax") == 1


@pytest.mark.parametrize("with_max", [False, True])
def test_reciprocal_form_is_a_site(params_file, rng, with_max):
    """Mul(e, Reciprocal(ReduceSum(e))), as some exporters write the division."""
    model = _decomposed_model(-1, with_max)
    div = model.graph.node[-1]
    model.graph.node.remove(div)
    model.graph.node.extend(
        [helper.make_node("Reciprocal", ["s"], ["inv"]), helper.make_node("Mul", ["inv", "e"], ["y"])]
    )
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert len(report.converted) == 1 and not {"Exp", "Reciprocal", "Mul", "ReduceSum"} & set(report.ops_after)
    x = rng.normal(0, 3, (3, 4, 5)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_explain_lists_the_near_misses(tmp_path, params_file):
    from click.testing import CliRunner

    from sit_onnx.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(_two_site_model_with_near_miss(), str(path))
    result = CliRunner().invoke(main, ["rewrite", str(path), "--params", params_file, "--explain"])
    assert result.exit_code == 0, result.output
    assert "not a site: Exp node 'exp' in graph main: its output has 3 consumers" in result.output
    quiet = CliRunner().invoke(main, ["rewrite", str(path), "--params", params_file, "-o", tmp_path / "q.onnx"])
    assert "not a site" not in quiet.output


@pytest.mark.parametrize("kind", ["value", "value_ints", "value_int"])
def test_axes_from_every_kind_of_constant_node(params_file, rng, kind):
    model = _decomposed_model(-1, False)
    del model.graph.initializer[:]
    value = {"value": helper.make_tensor("a", TensorProto.INT64, [1], [-1]), "value_ints": [-1], "value_int": -1}[kind]
    model.graph.node.insert(0, helper.make_node("Constant", [], ["axes"], **{kind: value}))
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert len(report.converted) == 1 and report.sites[0].axis == -1


def test_axes_from_a_constant_node_of_another_domain_are_not_constant(params_file):
    model = _decomposed_model(-1, False)
    del model.graph.initializer[:]
    model.graph.node.insert(0, helper.make_node("Constant", [], ["axes"], domain="custom", value_ints=[-1]))
    model.opset_import.append(helper.make_opsetid("custom", 1))
    with pytest.raises(Exception, match="takes its axes from a tensor that is not constant"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def test_reduce_max_axes_as_an_attribute_before_opset_18(params_file, rng):
    model = _decomposed_model(-1, True, opset=17)
    reduce_max = model.graph.node[0]
    del reduce_max.input[1:]
    reduce_max.attribute.append(helper.make_attribute("axes", [-1]))
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert report.sites[0].pattern == DECOMPOSED_SHIFTED and "ReduceMax" not in report.ops_after


@pytest.mark.parametrize(
    "tail, reason",
    [
        (lambda: [helper.make_node("Div", ["s", "e"], ["y"])], "does not divide the Exp's own output"),
        (
            lambda: [helper.make_node("Reciprocal", ["s"], ["inv"]), helper.make_node("Mul", ["inv", "inv"], ["y"])],
            "consumers",
        ),
        (
            lambda: [helper.make_node("Reciprocal", ["s"], ["inv"]), helper.make_node("Add", ["inv", "e"], ["y"])],
            "does not divide",
        ),
    ],
    ids=["sum-over-exp", "reciprocal-squared", "reciprocal-added"],
)
def test_other_uses_of_the_sum_are_no_softmax(params_file, tail, reason):
    model = _decomposed_model(-1, False)
    model.graph.node.pop()  # the Div
    model.graph.node.extend(tail())
    with pytest.raises(Exception, match=f"no Softmax.*{reason}"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def _mixed_precision_model(cast_back=True):
    """float16 logits; the row sum taken in float32 between Casts, as mixed-precision exports write it."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    nodes = [
        helper.make_node("Exp", ["x"], ["e"], name="exp"),
        helper.make_node("Cast", ["e"], ["e32"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["e32", "axes"], ["s32"], keepdims=1),
    ]
    if cast_back:
        nodes += [
            helper.make_node("Cast", ["s32"], ["s"], to=TensorProto.FLOAT16),
            helper.make_node("Div", ["e", "s"], ["y"]),
        ]
    else:  # the sum goes on in float32: not the Exp's own division
        nodes += [helper.make_node("Div", ["e32", "s32"], ["y32"]), helper.make_node("Cast", ["y32"], ["y"], to=10)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [3, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [3, 7])],
        [axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_sum_between_casts_is_a_site(params_file, rng):
    new, report = rewrite_model(_mixed_precision_model(), RewriteOptions(params_file=params_file))
    assert len(report.converted) == 1 and not {"Exp", "ReduceSum", "Cast", "Div"} & set(report.ops_after)
    x = rng.normal(0, 3, (3, 7)).astype(np.float16)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0].astype(np.float32), expected.astype(np.float32), atol=1e-3)


def test_division_after_the_cast_is_no_site(params_file):
    with pytest.raises(Exception, match="no Softmax.*its output is cast, then summed and divided"):
        rewrite_model(_mixed_precision_model(cast_back=False), RewriteOptions(params_file=params_file))


def _plumbed_model(restore_shape=(2, 3, 1), expand=True):
    """A shipped model's form: Sub(x, Expand(Reshape(Max(ReduceMax(x), c)))) -> Exp ->
    ReduceSum(keepdims=0) -> Reshape -> Expand -> Div."""
    c = helper.make_tensor("c", TensorProto.FLOAT, [], [-30.0])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], list(restore_shape))
    full = helper.make_tensor("full", TensorProto.INT64, [3], [2, 3, 5])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    nodes = [
        helper.make_node("ReduceMax", ["x", "axes"], ["m0"], keepdims=0),
        helper.make_node("Max", ["m0", "c"], ["m1"]),
        helper.make_node("Reshape", ["m1", "shape"], ["m2"]),
        helper.make_node("Expand", ["m2", "full"], ["m3"]),
        helper.make_node("Sub", ["x", "m3"], ["z"]),
        helper.make_node("Exp", ["z"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["s0"], keepdims=0),
        helper.make_node("Reshape", ["s0", "shape"], ["s1"]),
    ]
    divisor = "s1"
    if expand:
        nodes.append(helper.make_node("Expand", ["s1", "full"], ["s2"]))
        divisor = "s2"
    nodes.append(helper.make_node("Div", ["e", divisor], ["y"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 5])],
        [c, shape, full, axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("expand", [True, False])
def test_shape_plumbing_that_restores_the_axis_is_a_site(params_file, rng, expand):
    new, report = rewrite_model(_plumbed_model(expand=expand), RewriteOptions(params_file=params_file))
    assert len(report.converted) == 1 and report.sites[0].axis == -1
    assert not {"Exp", "ReduceSum", "Div"} & set(report.ops_after)
    x = rng.normal(0, 3, (2, 3, 5)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_shape_plumbing_to_another_axis_is_a_near_miss(params_file):
    """Square rows: the sum over the last axis reshaped to [2, 1, 3] divides along the wrong axis
    (valid shapes, no softmax)."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [2, 1, 3])
    nodes = [
        helper.make_node("Exp", ["x"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["s0"], keepdims=0),
        helper.make_node("Reshape", ["s0", "shape"], ["s1"]),
        helper.make_node("Div", ["e", "s1"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 3])],
        [axes, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(Exception, match="keepdims=0 and the sum comes back with shape \\[2, 1, 3\\]"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def _renamed_batch_model(sliced_axes=(0,), rank=2):
    """Magika's form (jax2tf through tf2onnx): x is sliced whole along `sliced_axes` (onnx's
    inference names those dims anew), then Exp -> ReduceSum(keepdims=0) -> Reshape to the shape read
    from the input (Shape -> Slice -> Concat with 1) -> Expand to that shape -> Div."""
    dims = ["n", "m"][: rank - 1] + [5]
    big = np.iinfo(np.int64).max
    init = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("starts", TensorProto.INT64, [len(sliced_axes)], [0] * len(sliced_axes)),
        helper.make_tensor("ends", TensorProto.INT64, [len(sliced_axes)], [big] * len(sliced_axes)),
        helper.make_tensor("sliced", TensorProto.INT64, [len(sliced_axes)], list(sliced_axes)),
        helper.make_tensor("lead", TensorProto.INT64, [1], [rank - 1]),
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "sliced"], ["xs"]),
        helper.make_node("Exp", ["xs"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["s0"], keepdims=0),
        helper.make_node("Shape", ["x"], ["full"]),
        helper.make_node("Slice", ["full", "zero", "lead"], ["rows"]),
        helper.make_node("Concat", ["rows", "one"], ["target"], axis=0),
        helper.make_node("Reshape", ["s0", "target"], ["s1"]),
        helper.make_node("Expand", ["s1", "target"], ["s2"]),
        helper.make_node("Div", ["e", "s2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        init,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


@pytest.mark.parametrize("rows", [1, 3])
def test_keepdims_0_sum_whose_batch_dim_inference_renamed_is_a_site(params_file, rng, rows):
    """onnx's inference calls the sliced batch dim unk__0 and the reshaped sum's dim n: the count
    the Reshape and the Expand keep proves them the same dim."""
    new, report = rewrite_model(_renamed_batch_model(), RewriteOptions(params_file=params_file))
    assert report.sites[0].converted and not {"Exp", "ReduceSum", "Div"} & set(report.ops_after)
    x = rng.normal(0, 3, (rows, 5)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_keepdims_0_sum_after_onnxruntimes_float16_converter_is_a_site(params_file, rng):
    """The converter annotates the Reshape's and the Expand's outputs with dims of their own names
    (['unk__1', 'unk__2'], ['unk__3', 'unk__4']): an Expand to the very shape its Reshape took still
    keeps the count (magika's model in float16 was left unconverted)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(_renamed_batch_model(), keep_io_types=True)
    annotated = {v.name: [d.dim_param for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    assert annotated["s1"][0] != annotated["s2"][0]  # what made it a near miss
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert report.sites[0].converted and not {"Exp", "ReduceSum", "Div"} & set(report.ops_after)
    x = rng.normal(0, 3, (3, 5)).astype(np.float32)
    half = x.astype(np.float16).astype(np.float32)
    expected = spiking_softmax(half, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=2e-3)


def test_an_expand_to_another_shape_tensor_needs_inference_to_prove_it(params_file):
    """The same form with the Expand's target computed again (another tensor, maybe other values):
    with the dims named apart nothing proves the count kept, so it stays a near miss."""
    model = _renamed_batch_model()
    model.graph.node.insert(6, helper.make_node("Concat", ["rows", "one"], ["again"], axis=0))
    model.graph.node[-2].input[1] = "again"
    for name, dims in (("s1", ["p", 1]), ("s2", ["q", 1])):
        model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    with pytest.raises(Exception, match="keepdims=0 and the sum comes back with shape \\['q', 1\\]"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def test_keepdims_0_sum_with_two_renamed_dims_is_a_near_miss(params_file):
    """Two dims named anew: the count alone cannot tell which is which."""
    model = _renamed_batch_model(sliced_axes=(0, 1), rank=3)
    with pytest.raises(Exception, match="keepdims=0 and the sum comes back with shape \\['n', 'm', 1\\]"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def test_restored_axis_needs_count_keeping_plumbing():
    """The rule, piece by piece: a renamed dim passes only through plumbing that keeps the count
    (an Expand that grows the tensor does not), unknown dims are never taken as equal."""
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.matchers.decomposed import keeps_count, restores_axis

    e = gs.Variable("e", np.float32, ["a", 5])
    renamed, unknown = gs.Variable("d", np.float32, ["b", 1]), gs.Variable("u", np.float32, [None, 1])
    same = gs.Variable("s", np.float32, ["b", 1])
    grown = gs.Variable("g", np.float32, ["b", 7])
    reshape = gs.Node("Reshape", inputs=[e], outputs=[renamed])
    expand_same = gs.Node("Expand", inputs=[renamed], outputs=[same])
    expand_grows = gs.Node("Expand", inputs=[renamed], outputs=[grown])
    assert keeps_count([reshape, expand_same]) and keeps_count([])
    assert not keeps_count([reshape, expand_grows])
    target, other = gs.Variable("target", np.int64, [2]), gs.Variable("other", np.int64, [2])
    shaped = gs.Variable("shaped", np.float32, ["c", 1])
    reshape_to = gs.Node("Reshape", inputs=[e, target], outputs=[shaped])
    to_own = gs.Node("Expand", inputs=[shaped, target], outputs=[gs.Variable("x1", np.float32, ["f", 1])])
    to_other = gs.Node("Expand", inputs=[shaped, other], outputs=[gs.Variable("x2", np.float32, ["f", 1])])
    assert keeps_count([reshape_to, to_own]) and not keeps_count([reshape_to, to_other])
    no_source = gs.Node("Expand", inputs=[gs.Variable("free", np.float32, ["c", 1]), target],
                        outputs=[gs.Variable("x3", np.float32, ["f", 1])])  # fmt: skip
    assert not keeps_count([no_source])
    assert not keeps_count([gs.Node("Tile", inputs=[renamed], outputs=[same])])
    assert keeps_count([gs.Node(op, inputs=[renamed], outputs=[same]) for op in ("Cast", "Unsqueeze", "Reshape")])
    unnamed = gs.Node("Expand", inputs=[unknown], outputs=[gs.Variable("u2", np.float32, [None, 1])])
    assert not keeps_count([unnamed])  # [None, 1] to [None, 1] may still grow: None is no name
    assert "shapes unknown" in restores_axis(gs.Variable("v", np.float32, None), e, 1, [reshape])
    assert "shapes unknown" in restores_axis(renamed, gs.Variable("w", np.float32, None), 1, [reshape])
    assert restores_axis(renamed, e, 1, [reshape]) is None
    assert restores_axis(renamed, e, -1, [reshape, expand_grows]) is not None
    assert restores_axis(unknown, gs.Variable("e2", np.float32, [None, 5]), 1) is not None
    assert "dimension 3" in restores_axis(gs.Variable("t", np.float32, ["a", 3]), e, 1, [reshape])
    assert "rank 3" in restores_axis(gs.Variable("r", np.float32, ["a", 1, 1]), e, 1, [reshape])


def test_hand_written_softmax_without_keepdims_attributes_is_matched(params_file, rng):
    """keepdims omitted means 1 (the ONNX default): the same site as with keepdims=1 written out."""
    model = _decomposed_model(-1, True)
    for node in model.graph.node:
        del node.attribute[:]  # ReduceMax and ReduceSum keep their dims by default
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert [s.pattern for s in report.sites] == [DECOMPOSED_SHIFTED] and report.sites[0].converted
    x = rng.normal(0, 3, (3, 4, 5)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), axis=-1, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize("inner", ["Attention", "com.microsoft::QLinearSoftmax"])
def test_an_attention_op_inside_a_model_local_function_is_reached(inner):
    """A module exported as a function whose body holds no Softmax but an op that hides one: the
    function is inlined, the op expanded, its softmax converted."""
    if inner == "Attention":
        body = [helper.make_node("Attention", ["q", "k", "v"], ["y"])]
        inputs, opsets = ["q", "k", "v"], [helper.make_opsetid("", 23)]
        shapes = {n: [1, 2, 4, 8] for n in inputs}
    else:
        scales = [helper.make_node("Constant", [], [n], value=helper.make_tensor(n, t, [], [v]))
                  for n, t, v in (("s", TensorProto.FLOAT, 0.05), ("z", TensorProto.UINT8, 128),
                                  ("so", TensorProto.FLOAT, 1 / 256), ("zo", TensorProto.UINT8, 0))]  # fmt: skip
        body = scales + [helper.make_node("QLinearSoftmax", ["q", "s", "z", "so", "zo"], ["y"], domain="com.microsoft",
                                          axis=-1, opset=13)]  # fmt: skip
        inputs, opsets = ["q"], [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        shapes = {"q": [2, 16]}
    function = helper.make_function("custom.modules", "Block", inputs, ["y"], body, opsets)
    elem = TensorProto.FLOAT if inner == "Attention" else TensorProto.UINT8
    graph = helper.make_graph(
        [helper.make_node("Block", inputs, ["out"], domain="custom.modules", name="block")],
        "g",
        [helper.make_tensor_value_info(n, elem, shapes[n]) for n in inputs],
        [helper.make_tensor_value_info("out", elem, None)],
    )
    model = helper.make_model(
        graph, functions=[function], opset_imports=[*opsets, helper.make_opsetid("custom.modules", 1)]
    )
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1 and report.attention[0]["expanded"]
    assert any("inlined 1 model-local function" in n for n in report.notes)
    feeds = {
        n: (np.random.default_rng(0).normal(0, 1, shapes[n]).astype(np.float32) if elem == TensorProto.FLOAT
            else np.random.default_rng(0).integers(0, 256, shapes[n]).astype(np.uint8))
        for n in inputs
    }  # fmt: skip
    got, want = (run(m, feeds)[0].astype(np.float64) for m in (new, model))
    assert got.shape == want.shape and np.abs(got - want).max() < (0.05 if elem == TensorProto.FLOAT else 10)


def test_a_softmax_in_an_if_inside_a_model_local_function_is_reached(params_file):
    branch = helper.make_graph(
        [helper.make_node("Softmax", ["s"], ["p"], axis=-1, name="inner")],
        "then",
        [],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["q"])],
        "else",
        [],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, None)],
    )
    function = helper.make_function(
        "custom.modules",
        "Gate",
        ["s", "flag"],
        ["y"],
        [helper.make_node("If", ["flag"], ["y"], then_branch=branch, else_branch=other)],
        [helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        [helper.make_node("Gate", ["x", "flag"], ["out"], domain="custom.modules", name="gate")],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3, 6])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("custom.modules", 1)]
    model = helper.make_model(graph, functions=[function], opset_imports=opsets)
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert len(report.converted) == 1 and any("inlined 1 model-local function" in n for n in report.notes)
    x = np.random.default_rng(0).normal(0, 3, (3, 6)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x, "flag": np.array(True)})[0], expected, atol=1e-6)


def _same_named_softmaxes(count, branches=False):
    """`count` Softmax nodes all named "attn" in one graph, or (branches) one in each branch of an If."""
    if branches:
        model = _if_model()
        for attr in model.graph.node[0].attribute:
            attr.g.node[0].op_type, attr.g.node[0].name = "Softmax", "attn"
            del attr.g.node[0].attribute[:]
        return model
    nodes = [helper.make_node("Softmax", [f"t{i}"], [f"t{i + 1}"], name="attn") for i in range(count)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(f"t{count}", TensorProto.FLOAT, [2, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("count", [2, 3])
def test_softmaxes_sharing_a_name_in_one_graph_are_named_apart(params_file, count):
    """Per-site sets and --nodes key on the name: each gets the tensor it writes added."""
    _, report = rewrite_model(_same_named_softmaxes(count), RewriteOptions(params_file=params_file))
    assert [s.name for s in report.sites] == [f"attn@t{i + 1}" for i in range(count)]


def test_one_name_in_two_branches_stays_one_name(params_file):
    """The same module traced once per branch keeps its name (and shares its calibrated set)."""
    _, report = rewrite_model(_same_named_softmaxes(2, branches=True), RewriteOptions(params_file=params_file))
    assert sorted((s.name, s.graph) for s in report.sites) == [("attn", "else"), ("attn", "then")]


def test_an_exp_that_is_nothing_like_a_softmax_is_no_near_miss(params_file):
    """An Exp feeding neither a sum nor a division says nothing (it is not worth a word)."""
    nodes = [helper.make_node("Exp", ["x"], ["e"], name="exp"), helper.make_node("Softmax", ["e"], ["y"], name="sm")]
    _, report = rewrite_model(_hand_written(nodes), RewriteOptions(params_file=params_file))
    assert [s.name for s in report.sites] == ["sm"] and report.near_misses == []


def _hand_written(nodes, inits=()):
    """x [3, 4, 5] -> nodes -> y, opset 18, with `axes` [-1] and the given initializers."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [-1]), *inits],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _refusal(model, params_file) -> str:
    with pytest.raises(Exception) as refused:
        rewrite_model(model, RewriteOptions(params_file=params_file))
    return str(refused.value)


def test_a_sum_over_two_axes_is_refused_in_words(params_file):
    two = helper.make_tensor("two", TensorProto.INT64, [2], [1, 2])
    model = _hand_written(
        [
            helper.make_node("Exp", ["x"], ["e"], name="exp"),
            helper.make_node("ReduceSum", ["e", "two"], ["s"], name="sum"),
            helper.make_node("Div", ["e", "s"], ["y"]),
        ],
        [two],
    )
    assert "ReduceSum 'sum' reduces over 2 axes, a softmax over one" in _refusal(model, params_file)


def test_a_product_with_another_function_of_the_sum_is_no_softmax(params_file):
    """Mul(e, Sqrt(sum)) has the Reciprocal form's shape but divides nothing."""
    model = _hand_written(
        [
            helper.make_node("Exp", ["x"], ["e"], name="exp"),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], name="sum"),
            helper.make_node("Sqrt", ["s"], ["r"]),
            helper.make_node("Mul", ["e", "r"], ["y"]),
        ]
    )
    assert "the sum 'sum' does not divide the Exp's own output" in _refusal(model, params_file)


def test_an_exp_cast_then_summed_is_named_but_a_cast_exp_alone_is_not(params_file):
    cast_then_summed = _hand_written(
        [
            helper.make_node("Exp", ["x"], ["e"], name="exp"),
            helper.make_node("Cast", ["e"], ["c"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["c", "axes"], ["s"]),
            helper.make_node("Div", ["c", "s"], ["y"]),
        ]
    )
    reason = "its output is cast, then summed and divided: the division must take the Exp's own output"
    assert _refusal(cast_then_summed, params_file).endswith("Exp 'exp' is no softmax site: " + reason)
    cast_alone = _hand_written(
        [
            helper.make_node("Exp", ["x"], ["e"], name="exp"),
            helper.make_node("Cast", ["e"], ["c"], to=TensorProto.FLOAT),
            helper.make_node("Softmax", ["c"], ["y"], name="sm"),
        ]
    )
    _, report = rewrite_model(cast_alone, RewriteOptions(params_file=params_file))
    assert [s.name for s in report.sites] == ["sm"] and report.near_misses == []


@pytest.mark.parametrize("axis_back, converts", [(-1, True), (0, False)])
def test_a_dropped_sum_brought_back_by_unsqueeze_in_the_reciprocal_form(params_file, rng, axis_back, converts):
    """keepdims=0, Unsqueeze, Reciprocal, Mul: a site when the Unsqueeze restores the summed axis."""
    back = helper.make_tensor("back", TensorProto.INT64, [1], [axis_back])
    model = _hand_written(
        [
            helper.make_node("Exp", ["x"], ["e"], name="exp"),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=0),
            helper.make_node("Unsqueeze", ["s", "back"], ["s1"]),
            helper.make_node("Reciprocal", ["s1"], ["r"]),
            helper.make_node("Mul", ["e", "r"], ["y"]),
        ],
        [back],
    )
    if not converts:
        assert "has keepdims=0 and the sum comes back with" in _refusal(model, params_file)
        del model.graph.input[0].type.tensor_type.shape.dim[:]  # no shapes to check the plumbing by
        model.graph.input[0].type.tensor_type.ClearField("shape")
        unknown = "has keepdims=0 and the shape plumbing after it cannot be checked (shapes unknown)"
        assert unknown in _refusal(model, params_file)
        return
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert [(s.name, s.pattern) for s in report.sites] == [("exp", DECOMPOSED)]
    x = rng.normal(0, 2, (3, 4, 5)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize("exp_name, site_name", [("exp", "exp"), ("", "div")])
def test_a_written_out_site_is_named_by_its_exp_else_its_division(params_file, exp_name, site_name):
    model = _hand_written(
        [
            helper.make_node("Exp", ["x"], ["e"], name=exp_name),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"]),
            helper.make_node("Div", ["e", "s"], ["y"], name="div"),
        ]
    )
    _, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert [s.name for s in report.sites] == [site_name]


def test_a_max_with_keepdims_0_is_not_taken_as_the_shift(params_file):
    """x - ReduceMax(x, keepdims=0) broadcasts along the wrong axis: the site starts at the Exp."""
    model = _hand_written(
        [
            helper.make_node("ReduceMax", ["x", "axes"], ["m"], keepdims=0),
            helper.make_node("Sub", ["x", "m"], ["d"]),
            helper.make_node("Exp", ["d"], ["e"], name="exp"),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"]),
            helper.make_node("Div", ["e", "s"], ["y"]),
        ]
    )
    _, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert [s.pattern for s in report.sites] == [DECOMPOSED]


def test_constant_values_are_read_through_castlike_and_from_float_attributes():
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.matchers.base import constant_value

    def made_by(op, inputs=(), domain=None, **attrs):
        out = gs.Variable("out")
        gs.Node(op, inputs=list(inputs), outputs=[out], attrs=attrs, domain=domain)
        return out

    axes = gs.Constant("axes", np.array([2], np.int64))
    assert constant_value(made_by("CastLike", [axes, gs.Variable("like")])).tolist() == [2]
    assert constant_value(made_by("Constant", value_floats=[0.5, 1.5])).tolist() == [0.5, 1.5]
    assert constant_value(made_by("Constant", value_float=2.5)).tolist() == 2.5
    assert constant_value(made_by("Constant", domain="ai.onnx", value_float=2.5)).tolist() == 2.5
    assert constant_value(made_by("Constant", domain="com.other", value_float=2.5)) is None
    assert constant_value(made_by("Cast", [axes])) is None


@pytest.mark.parametrize("axis", [3, -4, 2**40])
def test_a_softmax_whose_axis_is_out_of_range_is_no_site_and_says_why(tmp_path, axis):
    """ONNX refuses such a Softmax, and onnxruntime too, but where it truncates the axis to 32 bits
    (2**40 reads as 0, and the source runs): it was converted, and our kernels then refused the
    converted model when the session was created."""
    model = softmax_model([2, 3, 4], axis)
    with pytest.raises(SitOnnxError) as raised:
        rewrite_model(model, RewriteOptions())
    assert str(raised.value) == (
        "model: no Softmax (nor Exp→ReduceSum→Div softmax) to convert; Softmax 'sm' is no softmax site: "
        f"its axis {axis} is out of range for its rank-3 input"
    )
    from click.testing import CliRunner

    from sit_onnx.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    result = CliRunner().invoke(main, ["rewrite", str(path), "-o", str(tmp_path / "o.onnx"), "--explain"])
    assert result.exit_code == 1 and not (tmp_path / "o.onnx").exists()
    model.graph.node.append(helper.make_node("Softmax", ["y"], ["z"], axis=-1, name="fine"))
    model.graph.output[0].name = "z"
    onnx.save(model, str(path))
    result = CliRunner().invoke(main, ["rewrite", str(path), "-o", str(tmp_path / "o.onnx"), "--explain"])
    assert result.exit_code == 0, result.output
    assert (
        f"not a site: Softmax node 'sm' in graph main: its axis {axis} is out of range for its rank-3 input"
        in result.output
    )


def test_a_softmax_of_a_scalar_is_no_site():
    """Rank 0 has no axis at all: -1 is out of range there too."""
    with pytest.raises(
        SitOnnxError, match="Softmax 'sm' is no softmax site: its axis -1 is out of range for its rank-0"
    ):
        rewrite_model(softmax_model([], -1), RewriteOptions())


def test_every_plumbing_node_after_the_sum_must_keep_its_count(params_file):
    """The first node after a keepdims=0 sum is plumbing too: here an Expand to a target computed
    apart (nothing proves it keeps the count), then a Reshape that does. With the dims named apart
    it stays a near miss; had the check skipped the Expand, the Reshape alone would have passed."""
    model = _renamed_batch_model()
    nodes = list(model.graph.node)
    reshape, expand, div = nodes[-3], nodes[-2], nodes[-1]
    del model.graph.node[-3:]
    model.graph.node.extend(
        [
            helper.make_node("Expand", ["s0", "rows"], ["s1"]),
            helper.make_node("Reshape", ["s1", "target"], ["s2"]),
            div,
        ]
    )
    assert (reshape.op_type, expand.op_type, div.input[1]) == ("Reshape", "Expand", "s2")
    for name, dims in (("s1", ["q"]), ("s2", ["p", 1])):
        model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    with pytest.raises(Exception, match="keepdims=0 and the sum comes back with shape \\['p', 1\\]"):
        rewrite_model(model, RewriteOptions(params_file=params_file))


def test_a_kept_sum_reshaped_before_the_division_is_no_site(params_file):
    """Only a keepdims=0 sum is followed through Reshapes: a kept [3, 1] sum reshaped to [1, 3]
    divides each column by a row's sum, which is no softmax, and is left alone saying why."""
    graph = helper.make_graph(
        [
            helper.make_node("Exp", ["x"], ["e"], name="exp"),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], name="sum"),
            helper.make_node("Reshape", ["s", "across"], ["r"]),
            helper.make_node("Div", ["e", "r"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])],
        [
            helper.make_tensor("axes", TensorProto.INT64, [1], [-1]),
            helper.make_tensor("across", TensorProto.INT64, [2], [1, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert "the sum 'sum' does not divide the Exp's own output" in _refusal(model, params_file)
