"""Find the softmax sites of a graph: Softmax nodes and softmax written out by hand.

A site records what the rewrite needs (input, output, axis) and what the report
shows (name, which graph, which pattern). Subgraphs (If/Loop/Scan bodies) are
searched too; their sites name the graph they live in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from sit_onnx.graph.walk import walk_graphs

SOFTMAX = "Softmax"
DECOMPOSED = "Exp-ReduceSum-Div"
DECOMPOSED_SHIFTED = "ReduceMax-Sub-Exp-ReduceSum-Div"


@dataclass
class SoftmaxSite:
    """One softmax in the graph, with the nodes that make it up."""

    name: str
    graph: gs.Graph = field(repr=False)
    pattern: str
    axis: int | None
    logits: gs.Tensor = field(repr=False)
    output: gs.Tensor = field(repr=False)
    nodes: list = field(default_factory=list, repr=False)


def find_sites(graph: gs.Graph) -> list[SoftmaxSite]:
    """Every softmax site, in graph order (graphs already topologically sorted)."""
    sites = []
    for sub in walk_graphs(graph):
        for node in sub.nodes:
            if node.op == "Softmax" and (node.domain or "") in ("", "ai.onnx"):
                sites.append(_softmax_node_site(sub, node))
            elif node.op == "Exp" and (node.domain or "") in ("", "ai.onnx"):
                site = _decomposed_site(sub, node)
                if site is not None:
                    sites.append(site)
    return sites


def _softmax_node_site(graph: gs.Graph, node: gs.Node) -> SoftmaxSite:
    axis = node.attrs.get("axis", -1)
    return SoftmaxSite(node.name, graph, SOFTMAX, axis, node.inputs[0], node.outputs[0], [node])


def constant_value(tensor: gs.Tensor) -> np.ndarray | None:
    """A tensor's value when it is constant: an initializer, or the output of a Constant node
    (as ONNX's own Softmax function body writes its axes). None otherwise."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    producer = tensor.inputs[0] if tensor.inputs else None
    if producer is None or producer.op != "Constant" or (producer.domain or "") not in ("", "ai.onnx"):
        return None
    for key in ("value", "value_ints", "value_int", "value_floats", "value_float"):
        if key in producer.attrs:
            value = producer.attrs[key]
            return np.asarray(value.values if isinstance(value, gs.Constant) else value)
    return None


def _single_axis(node: gs.Node) -> int | None:
    """The one reduction axis of a ReduceSum/ReduceMax (attribute or constant input), else None."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1:
        value = constant_value(node.inputs[1])
        axes = None if value is None else value.reshape(-1).tolist()
    if axes is None or len(axes) != 1 or node.attrs.get("keepdims", 1) != 1:
        return None
    return int(axes[0])


def _decomposed_site(graph: gs.Graph, exp: gs.Node) -> SoftmaxSite | None:
    """Match `Div(e, ReduceSum(e, axis, keepdims=1))` with `e = Exp(x)` (x optionally `x - ReduceMax(x)`)."""
    e = exp.outputs[0]
    consumers = list(e.outputs)
    sums = [n for n in consumers if n.op == "ReduceSum"]
    divs = [n for n in consumers if n.op == "Div" and n.inputs[0] is e]
    if len(consumers) != 2 or len(sums) != 1 or len(divs) != 1:
        return None
    reduce_sum, div = sums[0], divs[0]
    if div.inputs[1] is not reduce_sum.outputs[0] or len(reduce_sum.outputs[0].outputs) != 1:
        return None
    axis = _single_axis(reduce_sum)
    if axis is None:
        return None
    nodes = [exp, reduce_sum, div]
    logits, pattern = exp.inputs[0], DECOMPOSED
    sub = exp.inputs[0].inputs[0] if exp.inputs[0].inputs else None
    if sub is not None and sub.op == "Sub" and len(sub.outputs[0].outputs) == 1 and sub.inputs[1].inputs:
        reduce_max = sub.inputs[1].inputs[0]
        if (
            reduce_max.op == "ReduceMax"
            and reduce_max.inputs[0] is sub.inputs[0]
            and _single_axis(reduce_max) == axis
            and len(reduce_max.outputs[0].outputs) == 1
        ):
            nodes = [reduce_max, sub] + nodes
            logits, pattern = sub.inputs[0], DECOMPOSED_SHIFTED
    return SoftmaxSite(exp.name or div.name, graph, pattern, axis, logits, div.outputs[0], nodes)
