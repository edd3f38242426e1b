"""Types where onnx's inference stopped (after onnxruntime's own ops): traced up through ops that
keep their inputs' type, so activations and softmax sites after them are converted in their type."""

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.types import MAX_NODES, known_dtype, traced_dtype
from sit_onnx.graph.validate import infer_shapes
from sit_onnx.neurons.activation import shipped_activation, spiking_activation
from tests.helpers import run

MS = "com.microsoft"


def _untyped(name):
    return gs.Variable(name)  # no dtype: what graphsurgeon keeps where inference stopped


def _node(op, inputs, outputs, **attrs):
    return gs.Node(op, inputs=inputs, outputs=outputs, attrs=attrs)


def test_own_type_first_then_a_weight_above():
    typed = gs.Variable("t", dtype=np.float16)
    assert traced_dtype(typed) == np.float16
    w = gs.Constant("w", np.zeros((4, 4), np.float16))
    a, h = _untyped("a"), _untyped("h")
    _node("Opaque", [], [a])
    _node("MatMul", [a, w], [h])
    assert traced_dtype(h) == np.float16
    assert known_dtype(h) is None and known_dtype(gs.Variable("u", dtype=TensorProto.UNDEFINED)) is None


@pytest.mark.parametrize(
    "to, want", [(TensorProto.FLOAT16, np.float16), (TensorProto.FLOAT, np.float32), (TensorProto.INT64, np.int64)]
)
def test_a_cast_names_the_type(to, want):
    x, c, h = gs.Variable("x", dtype=np.float64), _untyped("c"), _untyped("h")
    _node("Cast", [x], [c], to=to)
    _node("Relu", [c], [h])
    assert traced_dtype(h) == want


def test_bfloat16_is_kept_as_its_enum():
    x, c, h = gs.Variable("x", dtype=np.float32), _untyped("c"), _untyped("h")
    _node("Cast", [x], [c], to=TensorProto.BFLOAT16)
    _node("Gelu", [c], [h])
    assert traced_dtype(h) == TensorProto.BFLOAT16
    above = gs.Variable("b", dtype=TensorProto.BFLOAT16)
    out = _untyped("o")
    _node("Add", [above, gs.Constant("i", np.zeros(1, np.int64))], [out])
    assert traced_dtype(out) == TensorProto.BFLOAT16


def test_integer_inputs_are_passed_over_and_other_ops_stop_the_walk():
    indices, table, h = gs.Variable("ids", dtype=np.int64), _untyped("table"), _untyped("h")
    source = gs.Variable("src", dtype=np.float16)
    _node("Identity", [source], [table])
    _node("Gather", [table, indices], [h])  # the indices are int64: the walk goes on up to the float16
    assert traced_dtype(h) == np.float16
    shape, s = gs.Variable("x", dtype=np.float32), _untyped("s")
    _node("Shape", [shape], [s])  # int64 out, whatever its input
    assert traced_dtype(s) is None
    lone = _untyped("lone")
    assert traced_dtype(lone) is None  # a graph input without type


@pytest.mark.parametrize("hops, found", [(MAX_NODES - 1, True), (MAX_NODES, False)])
def test_the_walk_is_bounded(hops, found):
    """MAX_NODES nodes are read: a typed input above MAX_NODES - 1 Identity nodes and the last
    Relu is found, one more is not; a cycle ends too."""
    tensor = gs.Variable("x", dtype=np.float16)
    for k in range(hops):
        nxt = _untyped(f"t{k}")
        _node("Identity", [tensor], [nxt])
        tensor = nxt
    _node("Relu", [tensor], [out := _untyped("out")])
    assert traced_dtype(out) == (np.float16 if found else None)
    a, b = _untyped("a"), _untyped("b")
    _node("Add", [b], [a])
    _node("Add", [a], [b])
    assert traced_dtype(a) is None


def _after_ort_ops(dtype=TensorProto.FLOAT, head=("Gelu", MS)):
    """SkipLayerNormalization (onnx's inference stops there) -> Gemm -> Gelu -> MatMul -> Softmax,
    as onnxruntime's optimizer writes a BERT layer: every tensor after the first op is untyped."""
    np_type = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    rng = np.random.default_rng(0)
    consts = {
        "skip": rng.normal(0, 1, (2, 8, 16)),
        "gamma": np.ones(16),
        "beta": np.zeros(16),
        "w": rng.normal(0, 0.5, (16, 16)),
        "b": rng.normal(0, 0.5, 16),
        "w2": rng.normal(0, 0.5, (16, 8)),
    }
    nodes = [
        helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["n"], domain=MS, epsilon=1e-5),
        helper.make_node("Reshape", ["n", "flat"], ["n2"]),
        helper.make_node("Gemm", ["n2", "w", "b"], ["h"], name="fc"),
        helper.make_node(head[0], ["h"], ["g"], name="act", domain=head[1]),
        helper.make_node("MatMul", ["g", "w2"], ["s"], name="scores"),
        helper.make_node("Softmax", ["s"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "ort",
        [helper.make_tensor_value_info("x", dtype, [2, 8, 16])],
        [helper.make_tensor_value_info("y", dtype, None)],
        [numpy_helper.from_array(v.astype(np_type), k) for k, v in consts.items()]
        + [numpy_helper.from_array(np.array([16, 16], np.int64), "flat")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
@pytest.mark.parametrize("head", [("Gelu", MS), ("QuickGelu", MS), ("Sigmoid", "")])
def test_activations_after_onnxruntimes_ops_are_converted_in_their_type(dtype, head):
    model = _after_ort_ops(dtype, head)
    inferred = gs.import_onnx(infer_shapes(model))
    assert known_dtype(inferred.tensors()["h"]) is None  # the gap: inference stopped at SkipLayerNormalization
    function = {"Gelu": "gelu", "QuickGelu": "silu", "Sigmoid": "sigmoid"}[head[0]]
    new, report = rewrite_model(model, RewriteOptions(activations=(function,)))
    assert [a["function"] for a in report.activations] == [function] and report.activation_misses == []
    assert [s.converted for s in report.sites] == [True]
    np_type = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    x = np.random.default_rng(1).normal(0, 1, (2, 8, 16)).astype(np_type)
    y_new, y_old = run(new, {"x": x})[0], run(model, {"x": x})[0]
    assert y_new.dtype == np_type and y_new.shape == (16, 8)
    assert np.abs(y_new.astype(np.float32) - y_old.astype(np.float32)).max() < 0.1


def test_the_converted_activation_after_onnxruntimes_ops_is_the_reference():
    model = _after_ort_ops(head=("Gelu", MS))
    new, _ = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    new.graph.output[0].name = "g"  # read the activation's own output: it is the reference's
    probe = run(new, {"x": np.random.default_rng(2).normal(0, 1, (2, 8, 16)).astype(np.float32)})[0]
    original = model
    original.graph.output[0].name = "h"
    h = run(original, {"x": np.random.default_rng(2).normal(0, 1, (2, 8, 16)).astype(np.float32)})[0]
    np.testing.assert_array_equal(probe, spiking_activation(h, shipped_activation("gelu", 12)))


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("opset", [13, 17])
def test_float16_softmax_after_onnxruntimes_ops_runs_below_castlike(opset, fuse):
    """Below opset 15 the spiking ops compute float16 between Casts, which need the logits' type:
    assumed float32 where inference stopped, the converted model did not load (a Sub of float16 and
    float32 in the function body)."""
    model = _after_ort_ops(TensorProto.FLOAT16, ("Sigmoid", ""))
    model.opset_import[0].version = opset
    new, report = rewrite_model(model, RewriteOptions(fuse=fuse))
    assert [s.converted for s in report.sites] == [True]
    x = np.random.default_rng(1).normal(0, 1, (2, 8, 16)).astype(np.float16)
    y_new, y_old = run(new, {"x": x})[0], run(model, {"x": x})[0]
    assert y_new.dtype == np.float16 and np.abs(y_new.astype(np.float32) - y_old).max() < 0.05


def test_the_walk_goes_on_past_a_branch_that_says_nothing_and_past_nodes_seen_twice():
    """Breadth first over every input: an op that changes types ends its own branch only; a node
    reached twice (a diamond) is read once and the walk goes on."""
    typed, u1, u2, out = gs.Variable("t", dtype=np.float16), _untyped("u1"), _untyped("u2"), _untyped("out")
    _node("Opaque", [], [u1])
    _node("Identity", [typed], [u2])
    _node("Add", [u1, u2], [out])
    assert traced_dtype(out) == np.float16
    deep, b, a, twice = gs.Variable("c", dtype=np.float16), _untyped("b"), _untyped("a"), _untyped("twice")
    _node("Relu", [deep], [b])
    _node("Identity", [b], [a])
    _node("Add", [a, a], [twice])
    assert traced_dtype(twice) == np.float16


def test_a_masks_cast_above_wheres_condition_names_nothing():
    """Only the inputs that carry values are walked up: a mask's Cast to bool above Where's
    condition had named a GPT decoder's softmax logits bool (inside onnxruntime's GreedySearch,
    where onnx's inference never goes), and the rewrite cast the attention weights to bool."""
    mask, condition, scores, masked = _untyped("mask"), _untyped("cond"), _untyped("scores"), _untyped("masked")
    _node("Cast", [gs.Variable("m", dtype=np.int32)], [mask], to=TensorProto.BOOL)
    _node("Unsqueeze", [mask, gs.Constant("axes", np.array([1], np.int64))], [condition])
    filler = _untyped("filler")
    _node("Constant", [], [filler], value=np.array(-1e4, np.float32))  # a Constant node's output: untyped
    h, q, keys, product, scale = _untyped("h"), _untyped("q"), _untyped("keys"), _untyped("product"), _untyped("scale")
    _node("Opaque", [], [h, keys])
    _node("MatMul", [h, gs.Constant("w", np.zeros((4, 4), np.float16))], [q])  # the type: three nodes up
    _node("MatMul", [q, keys], [product])
    _node("Constant", [], [scale], value=np.array(0.5, np.float32))
    _node("Mul", [product, scale], [scores])
    _node("Where", [condition, scores, filler], [masked])
    assert traced_dtype(masked) == np.float16


@pytest.mark.parametrize("op, mask_at", [("MultiHeadAttention", 4), ("Attention", 3), ("GroupQueryAttention", 5)])
def test_an_attention_ops_mask_input_names_nothing(op, mask_at):
    key_mask, attended, query, cast = _untyped("key_mask"), _untyped("attended"), _untyped("query"), _untyped("c")
    _node("Cast", [gs.Variable("p", dtype=np.int64)], [key_mask], to=TensorProto.INT32)
    _node("Cast", [gs.Variable("x", dtype=np.float64)], [cast], to=TensorProto.FLOAT)
    _node("Relu", [cast], [query])  # the query's Cast lies one node further up than the mask's
    inputs = [query, *(gs.Variable.empty() for _ in range(mask_at - 1)), key_mask]  # the mask (seqlens_k) in its slot
    _node(op, inputs, [attended])
    assert traced_dtype(attended) == np.float32


def test_an_integer_value_input_is_passed_over_and_missing_optional_inputs_are_no_error():
    out, above = _untyped("out"), _untyped("above")
    _node("Cast", [gs.Variable("x", dtype=np.float64)], [above], to=TensorProto.FLOAT16)
    _node("Add", [gs.Constant("count", np.ones(1, np.int64)), above], [out])  # the integer comes first
    assert traced_dtype(out) == np.float16
    attended, query = _untyped("attended"), _untyped("query")
    _node("Cast", [gs.Variable("y", dtype=np.float64)], [query], to=TensorProto.FLOAT)
    _node("MultiHeadAttention", [query, _untyped("key"), _untyped("value")], [attended])  # no bias, no mask
    assert traced_dtype(attended) == np.float32
