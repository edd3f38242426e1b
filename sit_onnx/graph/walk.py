"""A graph and every subgraph below it (If, Loop and Scan bodies), depth first: as protobuf
(GraphProto) for the passes that read the model, as onnx-graphsurgeon graphs for the rewrite."""

from __future__ import annotations

from collections.abc import Iterator

import onnx
import onnx_graphsurgeon as gs


def graph_protos(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from graph_protos(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from graph_protos(sub)


def graphs_by_place(graph: onnx.GraphProto, place: tuple = ()) -> Iterator[tuple[tuple, onnx.GraphProto]]:
    """Every graph with a key for where it sits (owner node's first output, attribute, index, down
    from the main graph's `()`), so a subgraph is found again in a rewritten model: branches may
    share names, and nodes move."""
    yield place, graph
    for node in graph.node:
        owner = node.output[0] if node.output else node.name
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from graphs_by_place(attribute.g, (*place, owner, attribute.name, 0))
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for index, sub in enumerate(attribute.graphs):
                    yield from graphs_by_place(sub, (*place, owner, attribute.name, index))


def attribute(node: onnx.NodeProto, name: str, default=None):
    """The value of the node's attribute `name`, or `default` where the node does not set it."""
    for found in node.attribute:
        if found.name == name:
            return onnx.helper.get_attribute_value(found)
    return default


def constant_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """The dims of every initializer and Constant tensor, subgraphs' included (weights need not
    be loaded: an external tensor's dims are in the model)."""
    shapes = {}
    for graph in graph_protos(model.graph):
        shapes.update({t.name: list(t.dims) for t in graph.initializer})
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                shapes[node.output[0]] = list(node.attribute[0].t.dims)
    return shapes


def walk_graphs(graph: gs.Graph) -> Iterator[gs.Graph]:
    yield graph
    for node in graph.nodes:
        for value in node.attrs.values():
            subgraphs = value if isinstance(value, list) else [value]
            for sub in subgraphs:
                if isinstance(sub, gs.Graph):
                    yield from walk_graphs(sub)


def graph_label(sub: gs.Graph, root: gs.Graph) -> str:
    """How reports name the graph a site lies in: "main", or the subgraph's own name."""
    return "main" if sub is root else sub.name
