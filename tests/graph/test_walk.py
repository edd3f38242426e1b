"""Finding a subgraph again after the rewrite: by where it sits (owner, attribute, index), since
branches share names and nodes move; and the declarations each keeps."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.walk import constant_shapes, graph_protos, graphs_by_place
from tests.helpers import run


def _branch(name: str, dims) -> onnx.GraphProto:
    """A softmax of the outer `x`, its output declared with `dims`."""
    return helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name=f"{name}_sm")],
        name,
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )


def test_places_name_every_subgraph_by_owner_attribute_and_index():
    lists = helper.make_node(
        "Custom", ["x"], ["c"], domain="example", bodies=[_branch("g0", None), _branch("g1", None)]
    )
    single = helper.make_node("If", ["flag"], ["i"], then_branch=_branch("t", None), else_branch=_branch("e", None))
    graph = helper.make_graph([lists, single], "main", [], [])
    places = {place: g.name for place, g in graphs_by_place(graph)}
    assert places == {
        (): "main",
        ("c", "bodies", 0): "g0",
        ("c", "bodies", 1): "g1",
        ("i", "then_branch", 0): "t",
        ("i", "else_branch", 0): "e",
    }
    assert [g.name for _, g in graphs_by_place(graph)] == [g.name for g in graph_protos(graph)]
    nested = helper.make_node("If", ["flag"], ["o"], then_branch=helper.make_graph([single], "outer", [], []))
    nested.attribute.append(helper.make_attribute("else_branch", _branch("e2", None)))
    deep = dict(graphs_by_place(helper.make_graph([nested], "main", [], [])))
    assert deep[("o", "then_branch", 0, "i", "else_branch", 0)].name == "e"
    unnamed_output = helper.make_node("If", ["flag"], [], name="by_name", then_branch=_branch("t", None))
    assert ("by_name", "then_branch", 0) in dict(graphs_by_place(helper.make_graph([unnamed_output], "m", [], [])))


def test_two_unnamed_ifs_keep_each_its_own_branch_declarations():
    """Two If nodes without names whose branches share names but not declared shapes: each branch
    is restored from its own source, found by its If's output."""
    ifs = [
        helper.make_node("If", ["flag"], [out], then_branch=_branch("then", dims), else_branch=_branch("else", dims))
        for out, dims in (("a", [2, 5]), ("b", ["n", 5]))
    ]
    graph = helper.make_graph(
        ifs,
        "main",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 4
    was, now = dict(graphs_by_place(model.graph)), dict(graphs_by_place(new.graph))
    assert set(was) == set(now)
    for place in was:
        assert [o.SerializeToString() for o in now[place].output] == [o.SerializeToString() for o in was[place].output]
    x = np.random.default_rng(0).normal(0, 1, (2, 5)).astype(np.float32)
    got = run(new, {"x": x, "flag": np.array(True)})
    assert all(g.shape == (2, 5) for g in got)


def _body(name, nodes):
    return helper.make_graph(
        nodes, name, [], [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    )


def test_constant_shapes_reads_initializers_and_value_constants_in_every_graph():
    """Dims without loading weights: a Constant's `value` tensor, an initializer, in subgraphs too;
    a Constant of another attribute (value_float) has no tensor dims to read."""
    inner = _body(
        "inner",
        [helper.make_node("Constant", [], ["k"], value=helper.make_tensor("t", TensorProto.FLOAT, [2, 3], [0.0] * 6))],
    )
    graph = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["c"], value=helper.make_tensor("t", TensorProto.INT64, [4], [1, 2, 3, 4])
            ),
            helper.make_node("Constant", [], ["f"], value_float=1.5),
            helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner),
        ],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.zeros((5, 1, 7), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert constant_shapes(model) == {"w": [5, 1, 7], "c": [4], "k": [2, 3]}
