"""Matcher: a Softmax node (any opset; older opsets are converted to 13 before matching)."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS, SOFTMAX, Match, SoftmaxSite


def match(graph: gs.Graph, node: gs.Node) -> Match | None:
    if node.op != "Softmax" or (node.domain or "") not in DEFAULT_DOMAINS:
        return None
    axis = node.attrs.get("axis", -1)
    shape = node.inputs[0].shape if node.inputs else None
    if shape is not None and not -len(shape) <= axis < len(shape):
        # ONNX refuses it; onnxruntime too, but where it truncates the axis to 32 bits (2**40 -> 0)
        return Match(reason=f"its axis {axis} is out of range for its rank-{len(shape)} input")
    return Match(SoftmaxSite(node.name, graph, SOFTMAX, axis, node.inputs[0], node.outputs[0], [node]))
