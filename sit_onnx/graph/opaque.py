"""Attributes onnx-graphsurgeon cannot carry, carried past it.

graphsurgeon imports FLOAT(S), INT(S), STRING(S), TENSOR and GRAPH attributes. It skips the rest
(SPARSE_TENSOR, TYPE_PROTO, GRAPHS, TENSORS, SPARSE_TENSORS, TYPE_PROTOS) with a warning, so a
rewrite silently dropped them: a Constant's `sparse_value` (the rewritten model then failed the
checker), `Optional`'s `type`, a custom op's tensors or subgraphs (lost). It cannot write a value
typed optional (an internal error, as a model with an optional output met it). It
decodes every string as UTF-8, so a binary string (onnxruntime-extensions' SentencepieceTokenizer
holds its serialised model as one) stopped the pass with an internal error. It cannot write an
empty list either (onnx tells a list's type by its first element): a Transpose's `perm` or a Conv's
`strides` given as [] stopped the pass with an internal error.

Before import, each such attribute becomes a STRING attribute of the same name holding a unique
placeholder; after export the placeholder is swapped for the original attribute, byte for byte.
Shape inference and the checker never see the placeholders: they run before and after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import onnx

from sit_onnx.graph.walk import graph_protos

A = onnx.AttributeProto
CARRIED = {A.FLOAT, A.INT, A.STRING, A.TENSOR, A.GRAPH, A.FLOATS, A.INTS, A.STRINGS}
WRITTEN_TYPES = ("tensor_type", "sequence_type", "sparse_tensor_type")  # value types graphsurgeon writes out


def _is_text(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _opaque(attribute: onnx.AttributeProto) -> bool:
    if attribute.type == A.STRING:
        return not _is_text(attribute.s)
    if attribute.type == A.STRINGS:
        return not attribute.strings or not all(_is_text(s) for s in attribute.strings)
    if attribute.type == A.INTS:
        return not attribute.ints
    if attribute.type == A.FLOATS:
        return not attribute.floats
    return attribute.type not in CARRIED


def _attributes(model: onnx.ModelProto) -> Iterator[tuple[onnx.NodeProto, int]]:
    """(node, attribute index) of every node in every graph graphsurgeon walks, and in local functions."""
    for graph in [*graph_protos(model.graph), *model.functions]:
        for node in graph.node:
            for index in range(len(node.attribute)):
                yield node, index


def hide_opaque(model: onnx.ModelProto) -> dict[bytes, onnx.AttributeProto]:
    """Swap, in place, every attribute graphsurgeon cannot carry for a placeholder; return the
    originals by placeholder. Values typed as graphsurgeon cannot write (an optional, a map) lose
    their type here: the rewrite puts every input, output and annotation back from the source."""
    for graph in graph_protos(model.graph):
        for info in [*graph.input, *graph.output, *graph.value_info]:
            if info.type.WhichOneof("value") not in (None, *WRITTEN_TYPES):
                info.ClearField("type")
    token, hidden = uuid.uuid4().hex, {}
    for node, index in _attributes(model):
        attribute = node.attribute[index]
        if _opaque(attribute):
            key = f"sit-onnx:opaque:{token}:{len(hidden)}".encode()  # the token: no text of a model reads so
            hidden[key] = onnx.AttributeProto()
            hidden[key].CopyFrom(attribute)
            node.attribute[index].CopyFrom(onnx.helper.make_attribute(attribute.name, key))
    return hidden


def restore_opaque(model: onnx.ModelProto, hidden: dict[bytes, onnx.AttributeProto]) -> None:
    """Put the originals back where graphsurgeon exported their placeholders."""
    if not hidden:
        return
    for node, index in _attributes(model):
        attribute = node.attribute[index]
        if attribute.type == A.STRING and attribute.s in hidden:
            attribute.CopyFrom(hidden[attribute.s])
