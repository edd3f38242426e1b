"""What onnx-graphsurgeon drops from a node comes back after the rewrite: doc_string and
metadata_props (torch's dynamo exporter writes each node's stack trace, module path and name scope
there: all were lost), and a function call's overload. The op that replaces a softmax site keeps
the site's notes."""

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.walk import graph_protos


def _noted(node, doc, **meta):
    node.doc_string = doc
    for key, value in meta.items():
        node.metadata_props.add(key=key, value=value)
    return node


def _notes(model):
    found = {}
    for graph in graph_protos(model.graph):
        for node in graph.node:
            found[node.output[0]] = (node.op_type, node.doc_string, {p.key: p.value for p in node.metadata_props})
    return found


def test_doc_strings_and_metadata_of_nodes_come_back():
    branch = helper.make_graph(
        [_noted(helper.make_node("Neg", ["x"], ["n"]), "negates", scope="branch")],  # unnamed, in a branch
        "then",
        [],
        [helper.make_tensor_value_info("n", TensorProto.FLOAT, [2, 3])],
        doc_string="the branch",
    )
    branch.metadata_props.add(key="kind", value="then")
    graph = helper.make_graph(
        [
            _noted(helper.make_node("Relu", ["x"], ["h"], name="relu"), "clips", origin="layer1"),
            _noted(helper.make_node("Softmax", ["h"], ["p"], axis=-1, name="att"), "attention", origin="layer2"),
            helper.make_node("If", ["c"], ["b"], then_branch=branch, else_branch=branch),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = rewrite_model(model, RewriteOptions())
    notes = _notes(new)
    assert notes["h"] == ("Relu", "clips", {"origin": "layer1"})
    assert notes["p"] == ("SpikingSoftmax", "attention", {"origin": "layer2"})  # the site's replacement
    assert notes["n"] == ("Neg", "negates", {"scope": "branch"})
    assert not any(doc for op, doc, _ in notes.values() if op not in ("Relu", "SpikingSoftmax", "Neg"))
    branches = [a.g for n in new.graph.node if n.op_type == "If" for a in n.attribute]
    assert [(b.doc_string, {p.key: p.value for p in b.metadata_props}) for b in branches] == [
        ("the branch", {"kind": "then"})
    ] * 2


def test_a_function_calls_overload_comes_back():
    body = onnx.FunctionProto()
    body.name, body.domain, body.overload = "twice", "local", "v2"
    body.input.append("a")
    body.output.append("b")
    body.node.append(helper.make_node("Add", ["a", "a"], ["b"]))
    body.opset_import.append(helper.make_opsetid("", 17))
    call = helper.make_node("twice", ["x"], ["d"], domain="local")
    call.overload = "v2"
    graph = helper.make_graph(
        [call, helper.make_node("Softmax", ["d"], ["y"], axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)], functions=[body]
    )
    model.ir_version = 10
    new, _ = rewrite_model(model, RewriteOptions())
    (found,) = [n for n in new.graph.node if n.op_type == "twice"]
    assert found.overload == "v2"
    onnx.checker.check_model(new)


def test_torch_dynamo_exports_keep_their_node_metadata():
    torch = pytest.importorskip("torch")

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.softmax(self.q(x) @ x.transpose(-1, -2), -1) @ x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.onnx.export(Attention(), (torch.randn(2, 4, 8),), dynamo=True, verbose=False).model_proto
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1
    before, after = _notes(model), _notes(new)
    assert before and all(meta for _, _, meta in before.values())  # torch writes every node's
    assert {out: meta for out, (_, _, meta) in after.items()} == {out: meta for out, (_, _, meta) in before.items()}
    assert "pkg.torch.onnx.stack_trace" in next(meta for op, _, meta in after.values() if op == "SpikingSoftmax")


def test_nodes_without_notes_are_written_as_they_were():
    """Only notes the source had are set: an empty field written out changes the node's bytes."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="relu"), helper.make_node("Softmax", ["h"], ["p"], axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, _ = rewrite_model(model, RewriteOptions())
    (relu,) = [n for n in new.graph.node if n.op_type == "Relu"]
    assert relu.SerializeToString() == model.graph.node[0].SerializeToString()
    assert not relu.HasField("doc_string") and not relu.HasField("overload")
    assert not new.graph.HasField("doc_string")  # nor the graph's, where the source's had none


@pytest.mark.parametrize("fuse", [True, False])
def test_nodes_after_the_sites_new_ones_keep_their_notes(fuse):
    """The chain form adds nodes that no source node wrote (the max, the shift): the nodes after them
    still get their notes back, in both forms."""
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["p"], axis=-1, name="att"),
            _noted(helper.make_node("Neg", ["p"], ["q"], name="neg"), "negates", origin="head"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, _ = rewrite_model(model, RewriteOptions(fuse=fuse))
    assert len(new.graph.node) > 2 or fuse  # the chain's own nodes come first
    assert _notes(new)["q"] == ("Neg", "negates", {"origin": "head"})


@pytest.mark.parametrize("size", [3, 600])  # kept in the light copy, or put aside as a large weight
def test_an_initializer_declared_as_an_input_stays_one(size):
    """torch's keep_initializers_as_inputs=True (and every IR < 4 model) declares weights as inputs a
    user may override: graphsurgeon dropped a small one from the inputs."""
    import onnxruntime as ort
    from onnx import numpy_helper

    w = numpy_helper.from_array(np.linspace(0, 1, size).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=-1)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, size]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [size]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, size])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    new, _ = rewrite_model(model, RewriteOptions())
    assert [i.name for i in new.graph.input] == ["x", "w"] and [t.name for t in new.graph.initializer] == ["w"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(new.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_overridable_initializers()] == ["w"]
    x = np.zeros((2, size), np.float32)
    flat = session.run(None, {"x": x, "w": np.zeros(size, np.float32)})[0]
    np.testing.assert_allclose(flat, 1 / size, rtol=0.05)  # overridden: every logit equal


def test_outputs_and_inputs_keep_their_declaration_whole():
    """onnx-graphsurgeon writes an output back without its doc_string and its dims' denotations; the
    rewrite declares every input and output as the source did."""
    out = helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 3], doc_string="probabilities")
    out.type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3], doc_string="logits")
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["p"], axis=-1, name="att")], "g", [x], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = rewrite_model(model, RewriteOptions())
    assert [s.converted for s in report.sites] == [True]
    assert [o.SerializeToString() for o in new.graph.output] == [out.SerializeToString()]
    assert [i.SerializeToString() for i in new.graph.input] == [x.SerializeToString()]
