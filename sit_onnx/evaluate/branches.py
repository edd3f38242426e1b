"""The If branches the data takes, made main-graph nodes: so calibration can read their sites.

onnxruntime returns graph outputs only, and a tensor inside an If's branch cannot be one. Where an
If's condition is a model input (or initializer) holding a single value on the data - a merged
decoder's `use_cache_branch` - the If is replaced by the nodes of the branch that value takes, and
that branch's tensors become the main graph's. Ifs that come up to the main graph so are taken in
turn (an If in a taken branch)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS


def take_branches(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, set[str]]:
    """A copy of `model` with every If whose condition the feeds fix replaced by the branch taken,
    and the names of the graphs so taken; `model` itself where there is none (no copy of its weights)."""
    constants = {t.name: t for t in model.graph.initializer}
    if all(_condition(n, feeds, constants) is None for n in model.graph.node):
        return model, set()
    taken_model = onnx.ModelProto()
    taken_model.CopyFrom(model)
    graph, taken = taken_model.graph, set()
    while True:
        fixed = ((i, n, _condition(n, feeds, constants)) for i, n in enumerate(graph.node))
        found = next(((i, n, value) for i, n, value in fixed if value is not None), None)
        if found is None:
            return taken_model, taken
        index, node, value = found
        branch = _branch(node, "then_branch" if value else "else_branch")
        _inline(graph, index, node, branch)
        constants.update({t.name: t for t in branch.initializer})
        taken.add(branch.name)


def _condition(node: onnx.NodeProto, feeds: dict[str, np.ndarray], constants: dict) -> bool | None:
    """The If's condition where the feeds or an initializer fix it to one value; else None."""
    if node.op_type != "If" or node.domain not in DEFAULT_DOMAINS:
        return None
    name = node.input[0]
    if name in feeds:
        value = np.asarray(feeds[name])
    elif name in constants:
        value = numpy_helper.to_array(constants[name])
    else:
        return None
    return bool(value.reshape(-1)[0]) if value.size == 1 else None


def _branch(node: onnx.NodeProto, name: str) -> onnx.GraphProto:
    return next(a.g for a in node.attribute if a.name == name)


def _inline(graph: onnx.GraphProto, index: int, node: onnx.NodeProto, branch: onnx.GraphProto) -> None:
    """The branch's nodes and initializers in place of the If; its outputs renamed to the If's by
    Identity nodes where the names differ (merged decoders name them alike)."""
    renames = [
        helper.make_node("Identity", [inner.name], [outer], name=f"{outer}/taken_branch")
        for inner, outer in zip(branch.output, node.output)
        if outer and inner.name != outer
    ]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes[:index] + list(branch.node) + renames + nodes[index + 1 :])
    graph.initializer.extend(branch.initializer)
