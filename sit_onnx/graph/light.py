"""A weightless view of a model, so the pass never serialises hundreds of MB more than once.

`light_copy` copies everything but the large main-graph initializers, which it
declares as typed graph inputs instead: shape inference, the checker and
onnx-graphsurgeon see the same types and shapes at a fraction of the cost.
`write_back` moves the rewritten structure into the original model, whose weights
never move.
"""

from __future__ import annotations

import onnx
from onnx import helper

from sit_onnx.graph.walk import graph_protos

ASIDE_BYTES = 1024  # initializers above this size stay out of the light copy


def _is_large(tensor: onnx.TensorProto) -> bool:
    return tensor.ByteSize() > ASIDE_BYTES


def light_copy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """The model without its large main-graph initializers (listed as inputs), and their names."""
    light = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(light, field, getattr(model, field))
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
    aside, declared = set(), {i.name for i in source.input}
    for tensor in source.initializer:
        if _is_large(tensor):
            aside.add(tensor.name)
            if tensor.name not in declared:
                graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        else:
            graph.initializer.append(tensor)
    return light, aside


def write_back(model: onnx.ModelProto, light: onnx.ModelProto, aside: set[str]) -> onnx.ModelProto:
    """Give `model` the structure of the rewritten light copy; its large weights stay where they are."""
    graph, source = model.graph, light.graph
    originally_inputs = {i.name for i in graph.input}
    unread = {t.name for t in graph.initializer} - _used_names(graph)  # the source's own: kept as they were
    used = _used_names(source)
    for field in ("node", "output", "value_info"):
        del getattr(graph, field)[:]
        getattr(graph, field).extend(getattr(source, field))
    del graph.input[:]
    graph.input.extend(i for i in source.input if i.name not in aside or i.name in originally_inputs)
    keep = (aside & used) | unread  # large weights still read after the rewrite; small ones come from `light`
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in keep:
            del graph.initializer[index]
    graph.initializer.extend(t for t in source.initializer if t.name not in unread)
    del model.opset_import[:]
    model.opset_import.extend(light.opset_import)
    del model.functions[:]
    model.functions.extend(light.functions)
    del model.metadata_props[:]
    model.metadata_props.extend(light.metadata_props)
    model.ir_version = light.ir_version
    return model


def _used_names(graph: onnx.GraphProto) -> set[str]:
    names = set()
    for g in graph_protos(graph):
        for node in g.node:
            names.update(node.input)
        names.update(o.name for o in g.output)
    return names
