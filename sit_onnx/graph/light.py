"""A weightless view of a model, so the pass never serialises hundreds of MB more than once.

`light_copy` copies everything but the large main-graph initializers, which it
declares as typed graph inputs instead: shape inference, the checker and
onnx-graphsurgeon see the same types and shapes at a fraction of the cost.
`write_back` moves the rewritten structure into the original model, whose weights
never move. String attributes that are not text (a tokenizer op's serialised model, as
onnxruntime-extensions' SentencepieceTokenizer holds it) travel as placeholders:
onnx-graphsurgeon decodes every string attribute as UTF-8.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import onnx
from onnx import helper

from sit_onnx.graph.walk import graph_protos

ASIDE_BYTES = 1024  # initializers above this size stay out of the light copy


def _is_large(tensor: onnx.TensorProto) -> bool:
    return tensor.ByteSize() > ASIDE_BYTES


@dataclass
class Aside:
    """What the light copy holds in another form: the large initializers (typed inputs there) and
    the binary string attributes (placeholders there, by placeholder)."""

    weights: set[str] = field(default_factory=set)
    blobs: dict[bytes, bytes] = field(default_factory=dict)


def light_copy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Aside]:
    """The model without its large main-graph initializers (listed as inputs) and with placeholders
    for its binary string attributes, and what was put aside."""
    light = onnx.ModelProto()
    for name in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(light, name, getattr(model, name))
    light.opset_import.extend(model.opset_import)
    light.metadata_props.extend(model.metadata_props)
    light.functions.extend(model.functions)
    graph, source = light.graph, model.graph
    graph.name, graph.doc_string = source.name, source.doc_string
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    graph.sparse_initializer.extend(source.sparse_initializer)
    aside, declared = Aside(), {i.name for i in source.input}
    for tensor in source.initializer:
        if _is_large(tensor):
            aside.weights.add(tensor.name)
            if tensor.name not in declared:
                graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        else:
            graph.initializer.append(tensor)
    token = uuid.uuid4().hex
    for attribute in _string_attributes(light):
        _hide_blobs(attribute, aside.blobs, token)
    return light, aside


def _string_attributes(model: onnx.ModelProto):
    """Every string or strings attribute of every node, in every graph and local function."""
    graphs = [*graph_protos(model.graph), *model.functions]
    for nodes in (g.node for g in graphs):
        for node in nodes:
            for attribute in node.attribute:
                if attribute.type in (onnx.AttributeProto.STRING, onnx.AttributeProto.STRINGS):
                    yield attribute


def _is_text(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _hide_blobs(attribute: onnx.AttributeProto, blobs: dict[bytes, bytes], token: str) -> None:
    def placeholder(value: bytes) -> bytes:
        if _is_text(value):
            return value
        key = f"sit-onnx:blob:{token}:{len(blobs)}".encode()  # the token: no text of the model reads so
        blobs[key] = value
        return key

    if attribute.type == onnx.AttributeProto.STRING:
        attribute.s = placeholder(attribute.s)
    else:
        attribute.strings[:] = [placeholder(v) for v in attribute.strings]


def _restore_blobs(model: onnx.ModelProto, blobs: dict[bytes, bytes]) -> None:
    if not blobs:
        return
    for attribute in _string_attributes(model):
        if attribute.type == onnx.AttributeProto.STRING:
            attribute.s = blobs.get(attribute.s, attribute.s)
        else:
            attribute.strings[:] = [blobs.get(v, v) for v in attribute.strings]


def write_back(model: onnx.ModelProto, light: onnx.ModelProto, aside: Aside) -> onnx.ModelProto:
    """Give `model` the structure of the rewritten light copy; its large weights stay where they are,
    its binary string attributes come back."""
    graph, source = model.graph, light.graph
    originally_inputs = {i.name for i in graph.input}
    used = _used_names(source)
    for name in ("node", "output", "value_info"):
        del getattr(graph, name)[:]
        getattr(graph, name).extend(getattr(source, name))
    del graph.input[:]
    graph.input.extend(i for i in source.input if i.name not in aside.weights or i.name in originally_inputs)
    keep = aside.weights & used  # large weights still read after the rewrite; small ones come from `light`
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in keep:
            del graph.initializer[index]
    graph.initializer.extend(source.initializer)
    del model.opset_import[:]
    model.opset_import.extend(light.opset_import)
    del model.functions[:]
    model.functions.extend(light.functions)
    del model.metadata_props[:]
    model.metadata_props.extend(light.metadata_props)
    model.ir_version = light.ir_version
    _restore_blobs(model, aside.blobs)
    return model


def _used_names(graph: onnx.GraphProto) -> set[str]:
    names = set()
    for g in graph_protos(graph):
        for node in g.node:
            names.update(node.input)
        names.update(o.name for o in g.output)
    return names
