"""`--inline`: the spiking ops expanded into standard ONNX ops, for runtimes without functions.

The function bodies check their attributes at run time (ONNX has no assert: a Reshape that fails),
and read each step's threshold, reset and weight with a Gather. Inlined with the attributes as
constants, all of that is constant: it is computed here, once, and written as the values it gives.
The graph shrinks (khmersm's three-site segmenter: 928 nodes to 724), and tools that retype a graph
see no check ops: onnxruntime's float16 converter turned the checks' IsInf to float16, which
onnxruntime then refused to load.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, inliner, numpy_helper
from onnx.reference import ReferenceEvaluator

from sit_onnx.domain import DOMAIN
from sit_onnx.graph.walk import graph_protos


def inline_spiking_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Expand the spiking ops into standard ops, their constant parts computed."""
    spell_out_defaults(model)  # a model converted by an earlier sit-onnx may leave them out
    before = {node.name for graph in graph_protos(model.graph) for node in graph.node}
    inlined = inliner.inline_selected_functions(
        model, [(f.domain, f.name) for f in model.functions if f.domain == DOMAIN], exclude=False
    )
    del inlined.functions[:]
    inlined.functions.extend(f for f in model.functions if f.domain != DOMAIN)
    kept = [o for o in inlined.opset_import if o.domain != DOMAIN]
    del inlined.opset_import[:]
    inlined.opset_import.extend(kept)
    opsets = [helper.make_opsetid(o.domain, o.version) for o in kept]
    for graph in graph_protos(inlined.graph):
        fold_constants(graph, {node.name for node in graph.node} - before, opsets)
    return inlined


def spell_out_defaults(model: onnx.ModelProto) -> None:
    """Give each spiking node the attributes it leaves to its function's defaults (a
    SpikingActivation's `gate`, a SpikingSoftmax's `shift`): onnx's inliner and its reference
    runtime do not apply them, and a body's `Constant` referring to an absent attribute has no
    value. Same numbers."""
    defaults = {(f.domain, f.name): f.attribute_proto for f in model.functions if f.domain == DOMAIN}
    for graph in graph_protos(model.graph):
        for node in graph.node:
            given = {a.name for a in node.attribute}
            node.attribute.extend(a for a in defaults.get((node.domain, node.op_type), ()) if a.name not in given)


def _constant_nodes(graph: onnx.GraphProto, ours: set[str]) -> list[onnx.NodeProto]:
    """The inlined nodes whose every input is computed from Constants alone (the Constants too)."""
    known, found = set(), []
    for node in graph.node:
        if node.name not in ours or (node.domain or "") not in ("", "ai.onnx"):
            continue
        if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute):
            continue
        if all(name in known for name in node.input if name):
            found.append(node)
            known.update(node.output)
    return found


def fold_constants(graph: onnx.GraphProto, ours: set[str], opsets: list) -> None:
    """Compute the inlined nodes `ours` that only constants feed, and put Constants of what they give
    in their place (those that anything else reads), each a tensor: no `value_float(s)` Constant is
    left, which onnxslim folds into a double (a slimmed model had mixed double and float). A check
    that fails (attributes the kernels would refuse) leaves the nodes as they are, to fail when the
    model loads, as the function bodies do. The inliner's names are its own: no subgraph reads them."""
    folded = _constant_nodes(graph, ours)
    if not folded:
        return
    computed = {name for node in folded for name in node.output}
    gone = {id(node) for node in folded}
    readers = [node for node in graph.node if id(node) not in gone]
    needed = [name for node in readers for name in node.input if name in computed]
    needed = list(dict.fromkeys(needed + [v.name for v in graph.output if v.name in computed]))
    model = helper.make_model(
        helper.make_graph(folded, "fold", [], [helper.make_empty_tensor_value_info(n) for n in needed]),
        opset_imports=opsets,
    )
    try:
        values = ReferenceEvaluator(model).run(None, {})
    except Exception:  # noqa: BLE001 - a check that refuses: left for run time, which names it
        return
    constants = {
        name: helper.make_node("Constant", [], [name], name=f"{name}/folded", value=_tensor(value, name))
        for name, value in zip(needed, values, strict=True)
    }
    nodes = list(constants.values()) + readers
    del graph.node[:]
    graph.node.extend(nodes)


def _tensor(value, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)
