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


@dataclass(frozen=True)
class NearMiss:
    """An Exp that starts a softmax-like pattern the matcher did not accept, and why (what
    `rewrite --explain` prints), so users can see what was skipped."""

    name: str
    graph: str
    reason: str


def find_sites(graph: gs.Graph, misses: list[NearMiss] | None = None) -> list[SoftmaxSite]:
    """Every softmax site, in graph order (graphs already topologically sorted). Exp nodes that
    almost form a softmax are appended to `misses` with the reason."""
    sites = []
    for sub in walk_graphs(graph):
        for node in sub.nodes:
            if node.op == "Softmax" and (node.domain or "") in ("", "ai.onnx"):
                sites.append(_softmax_node_site(sub, node))
            elif node.op == "Exp" and (node.domain or "") in ("", "ai.onnx"):
                site, reason = _decomposed_site(sub, node)
                if site is not None:
                    sites.append(site)
                elif reason is not None and misses is not None:
                    misses.append(NearMiss(node.name, "main" if sub is graph else sub.name, reason))
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


def _single_axis(node: gs.Node) -> tuple[int | None, str | None]:
    """The one reduction axis of a ReduceSum/ReduceMax (attribute or constant input), or why not."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1:
        value = constant_value(node.inputs[1])
        if value is None:
            return None, f"{node.op} {node.name!r} takes its axes from a tensor that is not constant"
        axes = value.reshape(-1).tolist()
    if axes is None:
        return None, f"{node.op} {node.name!r} reduces over every axis"
    if len(axes) != 1:
        return None, f"{node.op} {node.name!r} reduces over {len(axes)} axes, a softmax over one"
    if node.attrs.get("keepdims", 1) != 1:
        return None, f"{node.op} {node.name!r} has keepdims=0 (shape plumbing between the steps is not matched)"
    return int(axes[0]), None


def _sum_and_scale(e: gs.Tensor) -> tuple[gs.Node | None, gs.Node | None, str | None]:
    """The ReduceSum of `e` and the node dividing `e` by it: Div(e, s), or Mul(e, Reciprocal(s))."""
    consumers = list(e.outputs)
    sums = [n for n in consumers if n.op == "ReduceSum"]
    if not sums:
        return None, None, None  # an Exp that is no softmax at all: not worth a word
    if len(consumers) != 2 or len(sums) != 1:
        return None, None, f"its output has {len(consumers)} consumers; a softmax's Exp feeds a ReduceSum and a Div"
    reduce_sum = sums[0]
    total = reduce_sum.outputs[0]
    if len(total.outputs) != 1:
        return None, None, f"the sum {reduce_sum.name!r} has other consumers than the division"
    scale = total.outputs[0]
    other = next(n for n in consumers if n is not reduce_sum)
    if scale.op == "Div" and scale is other and scale.inputs[0] is e and scale.inputs[1] is total:
        return reduce_sum, scale, None
    if scale.op == "Reciprocal" and len(scale.outputs[0].outputs) == 1:
        mul = scale.outputs[0].outputs[0]
        if mul is other and mul.op == "Mul" and {id(t) for t in mul.inputs} == {id(e), id(scale.outputs[0])}:
            return reduce_sum, mul, None
    return None, None, f"the sum {reduce_sum.name!r} does not divide the Exp's own output"


def _decomposed_site(graph: gs.Graph, exp: gs.Node) -> tuple[SoftmaxSite | None, str | None]:
    """Match `Div(e, ReduceSum(e, axis, keepdims=1))` or `Mul(e, Reciprocal(ReduceSum(...)))` with
    `e = Exp(x)` (x optionally `x - ReduceMax(x)` over the same axis): the site, or why not."""
    e = exp.outputs[0]
    reduce_sum, scale, reason = _sum_and_scale(e)
    if reduce_sum is None:
        return None, reason
    axis, reason = _single_axis(reduce_sum)
    if axis is None:
        return None, reason
    reciprocal = reduce_sum.outputs[0].outputs[0]  # the Div itself, or the Reciprocal before the Mul
    nodes = [exp, reduce_sum, scale] if reciprocal is scale else [exp, reduce_sum, reciprocal, scale]
    logits, pattern = exp.inputs[0], DECOMPOSED
    sub = exp.inputs[0].inputs[0] if exp.inputs[0].inputs else None
    if sub is not None and sub.op == "Sub" and len(sub.outputs[0].outputs) == 1 and sub.inputs[1].inputs:
        reduce_max = sub.inputs[1].inputs[0]
        if (
            reduce_max.op == "ReduceMax"
            and reduce_max.inputs[0] is sub.inputs[0]
            and _single_axis(reduce_max)[0] == axis
            and len(reduce_max.outputs[0].outputs) == 1
        ):
            nodes = [reduce_max, sub] + nodes
            logits, pattern = sub.inputs[0], DECOMPOSED_SHIFTED
    return SoftmaxSite(exp.name or scale.name, graph, pattern, axis, logits, scale.outputs[0], nodes), None
