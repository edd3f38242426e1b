"""--inline computes the bodies' constant parts (attribute checks, each step's Gather) once and writes
their values: the graph shrinks, the numbers stay, onnxruntime's float16 converter can retype it (it
had turned the checks' IsInf to float16, which onnxruntime refused to load), and attributes the
kernels would refuse still fail at run time."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, inliner

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.inline import inline_spiking_functions
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.activation import shipped_activation, spiking_activation
from tests.graph.test_activation_rewrite import FORMS
from tests.helpers import run, softmax_model


def _converted(activations=(), opset=17, users=True, **options):
    """Softmax over x, x's GELU (Erf form, as torch exports it) as a second output, and first a
    node of the user's own that reads a Constant alone (the folding leaves it)."""
    model = softmax_model([3, 7], -1, opset=opset)
    if users:
        rest = list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(
            [
                helper.make_node("Constant", [], ["c"], name="users_constant", value_float=2.0),
                helper.make_node("Neg", ["c"], ["minus_c"], name="users_neg"),
                *rest,
            ]
        )
        model.graph.output.append(helper.make_tensor_value_info("minus_c", TensorProto.FLOAT, []))
    nodes, consts = FORMS["Erf form (torch)"][0]()
    model.graph.node.extend(
        helper.make_node(n.op_type, n.input, ["g" if o == "y" else o for o in n.output], name=n.name) for n in nodes
    )
    model.graph.initializer.extend(consts)
    model.graph.output.append(helper.make_tensor_value_info("g", TensorProto.FLOAT, [3, 7]))
    converted, _ = rewrite_model(model, RewriteOptions(activations=activations, **options))
    return converted


def _ours_on_constants(model: onnx.ModelProto) -> list[str]:
    """Inlined nodes, other than Constants, that read constants alone."""
    known = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    known |= {t.name for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type != "Constant" and node.input and all(name in known for name in node.input if name):
            found.append(f"{node.op_type} {node.name}")
            known.update(node.output)
    return found


@pytest.mark.parametrize(
    "activations, fuse, opset", [((), True, 17), ((), False, 17), (("gelu",), True, 17), ((), True, 11), ((), True, 13)]
)
def test_inlined_bodies_hold_no_constant_work_and_compute_the_same(activations, fuse, opset):
    converted = _converted(activations, opset, fuse=fuse)
    inlined = inline_spiking_functions(onnx.ModelProto.FromString(converted.SerializeToString()))
    unfolded = inliner.inline_local_functions(converted)
    assert _ours_on_constants(inlined) == ["Neg users_neg"] and len(_ours_on_constants(unfolded)) > 1
    ops = [n.op_type for n in inlined.graph.node]
    assert "IsInf" not in ops and "Gather" not in ops and "Split" not in ops
    assert len(inlined.graph.node) < 0.8 * len(unfolded.graph.node)
    x = {"x": np.random.default_rng(0).normal(0, 3, (3, 7)).astype(np.float32)}
    for got, want in zip(run(inlined, x), run(converted, x), strict=True):
        np.testing.assert_array_equal(got, want)
    expected = spiking_softmax(x["x"], shipped_params(12, (-12.0, 0.0)), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(inlined, x)[0], expected, atol=1e-6)
    if activations:
        np.testing.assert_array_equal(run(inlined, x)[2], spiking_activation(x["x"], shipped_activation("gelu", 12)))


def test_onnxruntimes_float16_converter_takes_the_inlined_graph():
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = _converted(("gelu",), users=False, inline=True)  # (the converter mistypes that Constant)
    half = convert_float_to_float16(converted, keep_io_types=True)
    x = {"x": np.random.default_rng(1).normal(0, 3, (3, 7)).astype(np.float32)}
    for got, want in zip(run(half, x), run(converted, x), strict=True):  # loads and runs (IsInf had not)
        np.testing.assert_allclose(got, want, atol=0.02)


def test_attributes_the_kernels_refuse_still_fail_at_run_time():
    converted = _converted()
    (node,) = [n for n in converted.graph.node if n.domain == "ai.sit"]
    steps = next(a for a in node.attribute if a.name == "thresholds")
    steps.floats[3] = float("nan")
    inlined = inline_spiking_functions(converted)  # no error here: the check is left to run
    assert "IsNaN" in [n.op_type for n in inlined.graph.node]
    x = {"x": np.zeros((3, 7), np.float32)}
    with pytest.raises(Exception, match="SpikingExp/"):  # at load (onnxruntime folds too) or at run
        ort.InferenceSession(inlined.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)


def test_sites_inside_an_if_branch_are_folded_there():
    then_graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["p"], axis=-1, name="inner")],
        "then",
        [],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 5])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["q"])],
        "else",
        [],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 5])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    inlined, report = rewrite_model(model, RewriteOptions(inline=True))
    assert len(report.converted) == 1
    branch = next(a.g for a in inlined.graph.node[0].attribute if a.name == "then_branch")
    ops = [n.op_type for n in branch.node]
    assert "GreaterOrEqual" in ops and "Gather" not in ops and "IsInf" not in ops
    x = np.random.default_rng(2).normal(0, 3, (2, 5)).astype(np.float32)
    expected = spiking_softmax(x, shipped_params(12, (-12.0, 0.0)), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(inlined, {"x": x, "c": np.array(True)})[0], expected, atol=1e-6)
