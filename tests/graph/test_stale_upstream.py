"""Stale shape annotations *upstream* of a fused attention op: a fixed batch or sequence length an
export left on a tensor two ops before the op, or a rank that is not the tensor's. onnxruntime runs
the source (the fused op never looks at them), but once the op is expanded into standard ops its
inference carries a stale dim down to them and folds their shapes by it: the converted model
failed at run time ("Non concat axis dimensions must match", Reshape errors), and a stale rank
picked no layout at all. The fused SpikingSoftmax's own function body read Shape(x) the same way.
Each case below failed before (but the ones that check what is kept)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.symbolic import symbolic_types
from sit_onnx.runtime.session import SessionSpec, make_session
from tests.helpers import run

HIDDEN, BATCH, SEQ = 16, 3, 5
MS = "com.microsoft"


def _attention(kind: str, x: str) -> tuple[list, list, list]:
    """Nodes, initializers and opsets of one attention op of `kind` reading `x` [b, s, 16]."""
    rng = np.random.default_rng(3)
    if kind == "MultiHeadAttention":
        node = helper.make_node("MultiHeadAttention", [x, x, x], ["att"], domain=MS, num_heads=2)
        return [node], [], [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    if kind == "Attention":  # onnxruntime's, with packed weights
        weights = [
            numpy_helper.from_array(rng.standard_normal((HIDDEN, 3 * HIDDEN)).astype(np.float32) * 0.3, "wqkv"),
            numpy_helper.from_array(np.zeros(3 * HIDDEN, np.float32), "bqkv"),
        ]
        node = helper.make_node("Attention", [x, "wqkv", "bqkv"], ["att"], domain=MS, num_heads=2)
        return [node], weights, [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    node = helper.make_node("Attention", [x, x, x], ["att"], q_num_heads=2, kv_num_heads=2)  # ONNX's, opset 23
    return [node], [], [helper.make_opsetid("", 23), helper.make_opsetid(MS, 1)]


def _model(kind: str, chain: list[tuple[str, str]], annotations: dict[str, list]):
    """x -> each (op, domain) of `chain` -> the attention op -> MatMul -> y; `annotations` by tensor."""
    nodes, name = [], "x"
    for index, (op, domain) in enumerate(chain):
        nodes.append(helper.make_node(op, [name], [f"t{index}"], domain=domain))
        name = f"t{index}"
    attention, weights, opsets = _attention(kind, name)
    wo = numpy_helper.from_array(np.random.default_rng(4).standard_normal((HIDDEN, 8)).astype(np.float32), "wo")
    nodes += [*attention, helper.make_node("MatMul", ["att", "wo"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 8])],
        [*weights, wo],
        value_info=[helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n, dims in annotations.items()],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def _feeds():
    return {"x": np.random.default_rng(5).standard_normal((BATCH, SEQ, HIDDEN)).astype(np.float32)}


def _converted_agrees(source):
    """Rewrites the source; the converted model runs where the source does and agrees with it."""
    expected = run(source, _feeds())[0]
    new, report = rewrite_model(source, RewriteOptions())
    assert [a["expanded"] for a in report.attention] == [True]
    got = run(new, _feeds())[0]
    assert got.shape == expected.shape == (BATCH, SEQ, 8)
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()
    return new, report


def _annotated(model) -> dict[str, list]:
    return {
        info.name: [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in model.graph.value_info
    }


@pytest.mark.parametrize("kind", ["MultiHeadAttention", "Attention", "OnnxAttention"])
@pytest.mark.parametrize(("stale", "dims"), [("batch", [2, "s", HIDDEN]), ("sequence", ["b", 8, HIDDEN])])
def test_a_stale_fixed_dim_two_ops_upstream_no_longer_breaks_the_converted_model(kind, stale, dims):
    source = _model(kind, [("Relu", ""), ("Neg", "")], {"t0": dims})
    new, report = _converted_agrees(source)
    assert "t0" not in _annotated(new)
    assert not any("dropped" in note for note in report.notes)  # unconfirmed, not contradicted: dropped silently


def test_a_true_annotation_upstream_stays():
    source = _model("MultiHeadAttention", [("Relu", ""), ("Neg", "")], {"t0": ["b", "s", HIDDEN]})
    new, _ = _converted_agrees(source)
    assert _annotated(new)["t0"] == ["b", "s", HIDDEN]


@pytest.mark.parametrize(
    ("chain", "stale"),
    [([("FastGelu", MS), ("Relu", "")], "t1"), ([("Relu", ""), ("Neg", "")], "t0")],
    ids=["past-FastGelu", "two-ops-upstream"],
)
def test_a_stale_rank_before_an_attention_op_is_dropped_before_the_expansion_reads_it(chain, stale):
    """[b*s, 16] where the tensor is [b, s, 16]; the stale rank had left the op unexpanded ("ranks
    (2, 2, 2) are no layout ..."). Past FastGelu (onnxruntime's own op), only onnxruntime's symbolic
    inference can tell; on t0, two ops before the op and its input t1 unannotated, onnx's inference
    carried the rank 2 down to t1."""
    source = _model("MultiHeadAttention", chain, {stale: ["b*s", HIDDEN]})
    new, report = _converted_agrees(source)
    assert stale not in _annotated(new)
    assert any(
        note.startswith(f"dropped the source's shape annotation of '{stale}' [b*s, 16] (inferred [b, s, 16]): ")
        for note in report.notes
    )


def test_onnx_attention_past_an_op_onnx_cannot_infer_is_expanded():
    """onnxruntime's symbolic inference trips over ONNX's opset-23 Attention itself; what it found
    before the op (the input's rank, behind FastGelu) is kept, and the op is expanded."""
    source = _model("OnnxAttention", [("FastGelu", MS), ("Sigmoid", "")], {})
    types = symbolic_types(source, guess=False)
    assert [d.dim_value or d.dim_param for d in types["t1"].tensor_type.shape.dim] == ["b", "s", HIDDEN]
    assert "att" not in types  # the op it failed on: its half-made output type is not kept
    _converted_agrees(source)
    _, ops = expand_attention(source, 23)
    assert [a.expanded for a in ops] == [True]


def test_a_stale_rank_upstream_of_an_attention_op_in_a_branch_is_found_in_the_main_graph():
    """The If branch reads `outer` from the main graph; the stale rank sits one op above that, where
    only tracing the branch's outer names back into the main graph finds it before the expansion."""
    branch_nodes = [
        helper.make_node("Relu", ["outer"], ["inner"]),
        helper.make_node("MultiHeadAttention", ["inner", "inner", "inner"], ["att"], domain=MS, num_heads=2),
    ]
    out = helper.make_tensor_value_info("att", TensorProto.FLOAT, None)
    then_branch = helper.make_graph(branch_nodes, "then", [], [out])
    else_branch = helper.make_graph([helper.make_node("Identity", ["outer"], ["same"])], "else", [], [])
    else_branch.output.append(helper.make_tensor_value_info("same", TensorProto.FLOAT, None))
    nodes = [
        helper.make_node("Neg", ["x"], ["stale"]),
        helper.make_node("Relu", ["stale"], ["outer"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", HIDDEN]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", HIDDEN])],
        value_info=[helper.make_tensor_value_info("stale", TensorProto.FLOAT, ["b*s", HIDDEN])],
    )
    source = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    source.ir_version = 10
    feeds = {**_feeds(), "c": np.array(True)}
    expected = run(source, feeds)[0]
    new, report = rewrite_model(source, RewriteOptions())
    assert [a["expanded"] for a in report.attention] == [True]
    assert "stale" not in _annotated(new)
    assert any(n.startswith("dropped the source's shape annotation of 'stale' [b*s, 16] (") for n in report.notes)
    got = run(new, feeds)[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def _before_softmax(op: str, dims: list, annotated: list, opset: int, axis: int):
    """x (`dims`) -> `op` -> t (annotated `annotated`) -> Softmax(axis) -> y, at `opset`."""
    nodes = [helper.make_node(op, ["x"], ["t"]), helper.make_node("Softmax", ["t"], ["y"], axis=axis)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        value_info=[helper.make_tensor_value_info("t", TensorProto.FLOAT, annotated)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("dims", [[2, 7], [4, 7]])
def test_a_stale_batch_before_a_plain_softmax_does_not_break_the_fused_ops_body(dims, inline):
    """No attention op: x -> Relu (annotated a batch of 2) -> Softmax, run at batch 3. The fused op's
    function body (what runs without our library) took the pad of its max from Shape(x), which
    onnxruntime folded by the annotation: "Non concat axis dimensions must match"."""
    source = _before_softmax("Relu", ["n", "k"], dims, 17, -1)
    x = np.random.default_rng(6).standard_normal((BATCH, 7)).astype(np.float32)
    expected = run(source, {"x": x})[0]
    new, _ = rewrite_model(source, RewriteOptions(inline=inline))
    got = run(new, {"x": x})[0]  # helpers.run: no library, the function body
    assert got.shape == (BATCH, 7) and np.abs(got - expected).max() < 0.02


@pytest.mark.parametrize("library", [False, True])
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("opset", [11, 12])
def test_a_stale_batch_before_a_legacy_softmax_does_not_break_the_upgraded_model(opset, fuse, library):
    """Softmax before opset 13 flattens its input: onnx's version converter keeps that with a Reshape
    to Shape(x), which onnxruntime folded by a stale batch annotated before it. The source ran at
    batch 3; the converted model failed with or without our library."""
    source = _before_softmax("Relu", ["n", 4, 5], [2, 4, 5], opset, 1)
    x = np.random.default_rng(7).standard_normal((BATCH, 4, 5)).astype(np.float32)
    expected = run(source, {"x": x})[0]
    new, _ = rewrite_model(source, RewriteOptions(fuse=fuse))
    assert _annotated(new).get("t") in (None, ["n", 4, 5])  # the stale batch gone (the converter writes the true one)
    spec = SessionSpec(provider="cpu", use_library=True)
    got = make_session(new, spec).run(None, {"x": x})[0] if library else run(new, {"x": x})[0]
    assert got.shape == (BATCH, 4, 5) and np.abs(got - expected).max() < 0.02


def test_a_contradicted_annotation_before_a_split_softmax_is_dropped_and_named():
    """A dim that is not the tensor's ([n, 2, 2] of an [n, 4, 2] tensor) before a Softmax: the split
    form's SpikingExp body was refused at session creation ("Incompatible dimensions")."""
    source = _before_softmax("Neg", ["n", 4, 2], ["n", 2, 2], 18, 1)
    x = np.random.default_rng(8).standard_normal((BATCH, 4, 2)).astype(np.float32)
    expected = run(source, {"x": x})[0]
    new, report = rewrite_model(source, RewriteOptions(fuse=False))
    assert "t" not in _annotated(new)
    assert any(
        n.startswith("dropped the source's shape annotation of 't' [n, 2, 2] (inferred [n, 4, 2]): ")
        for n in report.notes
    )
    got = run(new, {"x": x})[0]
    assert got.shape == (BATCH, 4, 2) and np.abs(got - expected).max() < 0.02


def test_a_stale_rank_does_not_change_what_a_legacy_softmax_normalises():
    """Softmax-11 with axis 1 on a [n, 4, 4] tensor normalises over its 16 trailing elements. onnx's
    version converter keeps that by the input's rank, and read it from an annotation of rank 2: the
    upgraded model normalised over 4 (weights of 1/4, not 1/16)."""
    source = _before_softmax("Relu", ["n", 4, 4], ["n*4", 4], 11, 1)
    x = np.random.default_rng(9).standard_normal((BATCH, 4, 4)).astype(np.float32)
    expected = run(source, {"x": x})[0]
    assert np.allclose(expected.reshape(BATCH, -1).sum(axis=1), 1.0)  # the source: over all 16
    new, report = rewrite_model(source, RewriteOptions())
    got = run(new, {"x": x})[0]
    assert np.abs(got - expected).max() < 0.01
    assert any(
        n.startswith("dropped the source's shape annotation of 't' [n*4, 4] (inferred [n, 4, 4])") for n in report.notes
    )


@pytest.mark.parametrize("opset", [11, 17])
def test_a_legacy_models_true_annotation_stays_and_an_unconfirmed_one_is_listed(opset):
    """The audit before onnx's version converter keeps what inference confirms and lists what it
    cannot confirm, as the audit of a model at a current opset does (`--explain` reads that list)."""
    true = _before_softmax("Relu", ["n", 4, 5], ["rows", 4, 5], opset, 1)  # named otherwise than inferred
    new, report = rewrite_model(true, RewriteOptions())
    assert _annotated(new)["t"] == ["rows", 4, 5] and report.unproven_annotations == []
    stale = _before_softmax("Relu", ["n", 4, 5], [2, 4, 5], opset, 1)
    new, report = rewrite_model(stale, RewriteOptions())
    assert "t" not in _annotated(new) or _annotated(new)["t"] == ["n", 4, 5]
    assert report.unproven_annotations == ["'t' [2, 4, 5]"]
    assert not any("'t'" in note for note in report.notes)  # unconfirmed, not contradicted: no note
