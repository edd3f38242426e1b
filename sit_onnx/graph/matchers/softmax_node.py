"""Matcher: a Softmax node (any opset; older opsets are converted to 13 before matching)."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS, SOFTMAX, Match, SoftmaxSite


def match(graph: gs.Graph, node: gs.Node) -> Match | None:
    if node.op != "Softmax" or (node.domain or "") not in DEFAULT_DOMAINS:
        return None
    axis = node.attrs.get("axis", -1)
    return Match(SoftmaxSite(node.name, graph, SOFTMAX, axis, node.inputs[0], node.outputs[0], [node]))
