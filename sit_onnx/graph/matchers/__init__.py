"""The matcher registry: one module per form of softmax. Each `match(graph, node)` returns None
(the node does not start its form), or a Match with the site or the reason it is no site."""

from sit_onnx.graph.matchers import decomposed, softmax_node

MATCHERS = (softmax_node.match, decomposed.match)

__all__ = ["MATCHERS"]
