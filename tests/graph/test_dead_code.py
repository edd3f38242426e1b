"""Dead code the source had (a node nothing reads, an initializer nothing reads) is kept: the
rewrite's cleanup, which drops the replaced sites, dropped it too, and an application that keeps
data in an unread initializer lost it. A dead softmax site is still converted away."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.graph.convert import RewriteOptions, find_canonical_sites, rewrite_model
from tests.helpers import run


def _model(dead_softmax=False):
    labels = numpy_helper.from_array(np.arange(4, dtype=np.int64), "labels")  # small: kept in the light copy
    table = numpy_helper.from_array(np.ones((64, 64), np.float32), "table")  # 16 KB: put aside as a weight
    scale = numpy_helper.from_array(np.array(2.0, np.float32), "scale")
    nodes = [
        helper.make_node("Softmax", ["x"], ["y"], axis=-1, name="att"),
        helper.make_node("Mul", ["x", "scale"], ["unread"], name="dead_mul"),  # its output is read by nothing
        helper.make_node("Neg", ["unread"], ["unread2"], name="dead_neg"),
    ]
    if dead_softmax:
        nodes.append(helper.make_node("Softmax", ["x"], ["nobody"], axis=0, name="dead_att"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [labels, table, scale],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dead_nodes_and_unread_initializers_are_kept():
    model = _model()
    new, report = rewrite_model(model, RewriteOptions())
    assert [s.name for s in report.sites if s.converted] == ["att"]
    assert sorted(n.name for n in new.graph.node if n.op_type != "SpikingSoftmax") == ["dead_mul", "dead_neg"]
    kept = {t.name: numpy_helper.to_array(t) for t in new.graph.initializer}
    assert sorted(kept) == ["labels", "scale", "table"]
    np.testing.assert_array_equal(kept["labels"], np.arange(4))
    np.testing.assert_array_equal(kept["table"], np.ones((64, 64)))
    onnx.checker.check_model(new, full_check=True)
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    assert run(new, {"x": x})[0].shape == (2, 3)


def test_a_dead_softmax_site_is_converted_away():
    new, report = rewrite_model(_model(dead_softmax=True), RewriteOptions())
    assert sorted(s.name for s in report.sites if s.converted) == ["att", "dead_att"]
    ops = [n.op_type for n in new.graph.node]
    assert "Softmax" not in ops and ops.count("SpikingSoftmax") == 1  # the dead one went with the cleanup
    assert {"dead_mul", "dead_neg"} <= {n.name for n in new.graph.node}


def test_the_site_finder_gives_the_model_back_whole():
    canonical, sites = find_canonical_sites(_model())
    assert [s.name for s in sites] == ["att"]
    assert sorted(t.name for t in canonical.graph.initializer) == ["labels", "scale", "table"]
    assert sorted(n.name for n in canonical.graph.node) == ["att", "dead_mul", "dead_neg"]


def test_a_node_read_only_inside_a_branch_and_orphaned_by_the_rewrite_goes():
    """The axes of a hand-written softmax inside an If's branch, made in the main graph: live before
    the rewrite (a branch reads it), orphaned after it, so not put back as the source's dead code."""
    branch = helper.make_graph(
        [
            helper.make_node("Exp", ["x"], ["e"]),
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
            helper.make_node("Div", ["e", "s"], ["q"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3])],
    )
    axes = numpy_helper.from_array(np.array([-1], np.int64))
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["axes"], value=axes, name="axes_node"),
            helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    new, report = rewrite_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), RewriteOptions())
    assert [s.converted for s in report.sites] == [True, True]
    assert [n.op_type for n in new.graph.node] == ["If"]


def _branch(name, dead):
    """A branch: softmax of the outer x, and (when `dead`) a node whose output nothing reads."""
    nodes = [helper.make_node("Softmax", ["x"], [f"{name}_q"], axis=-1, name=f"{name}_att")]
    if dead:
        nodes.append(helper.make_node("Neg", ["x"], [f"{name}_unread"], name=f"{name}_dead_neg"))
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}_q", TensorProto.FLOAT, [2, 3])])


def test_dead_nodes_inside_a_branch_are_kept():
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=_branch("then", True), else_branch=_branch("else", False))],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = rewrite_model(model, RewriteOptions())
    assert sorted(s.name for s in report.sites if s.converted) == ["else_att", "then_att"]
    branches = {a.name: a.g for a in new.graph.node[0].attribute}
    then_ops = [(n.op_type, n.name) for n in branches["then_branch"].node]
    assert ("Neg", "then_dead_neg") in then_ops and "Softmax" not in [op for op, _ in then_ops]
    neg = next(n for n in branches["then_branch"].node if n.op_type == "Neg")
    assert list(neg.input) == ["x"] and list(neg.output) == ["then_unread"]
    assert [n.op_type for n in branches["else_branch"].node] == ["SpikingSoftmax"]
    onnx.checker.check_model(new, full_check=True)
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    assert run(new, {"x": x, "c": np.array(True)})[0].shape == (2, 3)


def test_what_an_attention_ops_expansion_leaves_unread_goes():
    """ONNX's Attention body holds constants a given configuration does not read (ScaleF,
    PastKVSeqLen): they are the expansion's, not the source's dead code, and were kept (onnxruntime
    warned of each unused one when it loaded the model, as for torch's opset-23 dynamo exports)."""
    from sit_onnx.graph.walk import graph_protos
    from tests.graph.test_attention import _attention_model

    model, _ = _attention_model(23)
    model.graph.node.append(helper.make_node("Neg", [model.graph.input[0].name], ["unread"], name="own_dead"))
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1
    read = {name for g in graph_protos(new.graph) for n in g.node for name in n.input}
    read |= {o.name for o in new.graph.output}
    unread = [n.name for n in new.graph.node if not any(o in read for o in n.output)]
    assert unread == ["own_dead"]  # the source's own dead node stays
