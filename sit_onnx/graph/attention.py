"""Attention ops that hide a softmax: ONNX's own `Attention` (opset 23+) is expanded into its
function body (ONNX defines one per attribute and input combination), whose Softmax is then an
ordinary site; onnxruntime's fused attention ops (com.microsoft) are found and reported as left
alone, with why, so a conversion never claims success over a softmax it did not see.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import inliner

from sit_onnx.graph.walk import graph_protos

EXPAND_DOMAIN = "sit_onnx.expand"  # the temporary functions' domain; gone once inlined
STANDARD_ATTENTION_OPSET = 23
FUSED_ATTENTION = {
    ("com.microsoft", "Attention"),
    ("com.microsoft", "MultiHeadAttention"),
    ("com.microsoft", "GroupQueryAttention"),
    ("com.microsoft", "PackedAttention"),
    ("com.microsoft", "PackedMultiHeadAttention"),
    ("com.microsoft", "DecoderMaskedMultiHeadAttention"),
    ("com.microsoft", "SparseAttention"),
    ("com.microsoft", "PagedAttention"),
}


@dataclass
class AttentionOp:
    """An attention op the pass met: expanded (its softmax became a site) or left alone, and why."""

    name: str
    op: str
    graph: str
    expanded: bool
    reason: str | None = None


def _is_standard_attention(node: onnx.NodeProto) -> bool:
    return node.op_type == "Attention" and node.domain in ("", "ai.onnx")


def _known_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Every tensor's type that shape inference can tell (inputs, initializers, intermediates)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    for t in graph.initializer:
        types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return types


def _body_for(node: onnx.NodeProto, opset: int, types: dict) -> onnx.FunctionProto:
    schema = onnx.defs.get_schema(node.op_type, opset, "")
    input_types = [types[name].SerializeToString() if name else b"" for name in node.input]
    return onnx.FunctionProto.FromString(schema.get_context_dependent_function(node.SerializeToString(), input_types))


def expand_attention(model: onnx.ModelProto, opset: int) -> tuple[onnx.ModelProto, list[AttentionOp]]:
    """Expand the main graph's standard Attention nodes into ONNX's own function body, and list
    every attention op met (expanded or not, with the reason)."""
    found: list[AttentionOp] = []
    for graph in graph_protos(model.graph):
        for node in graph.node:
            if (node.domain, node.op_type) in FUSED_ATTENTION:
                reason = f"onnxruntime's fused {node.domain}::{node.op_type}: not decomposed by sit-onnx yet"
                found.append(AttentionOp(node.name, f"{node.domain}::{node.op_type}", graph.name, False, reason))
            elif _is_standard_attention(node) and graph is not model.graph:
                reason = "Attention inside a subgraph: only the main graph's are expanded"
                found.append(AttentionOp(node.name, "Attention", graph.name, False, reason))
    standard = [n for n in model.graph.node if _is_standard_attention(n)]
    if not standard:
        return model, found
    types = _known_types(model)
    targets = []
    for index, node in enumerate(standard):
        missing = [name for name in node.input if name and name not in types]
        if missing:
            reason = f"the types of {', '.join(missing)} are unknown (shape inference could not tell)"
            found.append(AttentionOp(node.name, "Attention", model.graph.name, False, reason))
            continue
        body = _body_for(node, opset, types)
        body.name, body.domain = f"Attention_{index}", EXPAND_DOMAIN
        model.functions.append(body)
        node.op_type, node.domain = body.name, EXPAND_DOMAIN
        del node.attribute[:]  # the body was made for these attribute values
        targets.append((EXPAND_DOMAIN, body.name))
        found.append(AttentionOp(node.name, "Attention", model.graph.name, True))
    if targets:
        model.opset_import.append(onnx.helper.make_opsetid(EXPAND_DOMAIN, 1))
        model = inliner.inline_selected_functions(model, targets, exclude=False)
        kept = [o for o in model.opset_import if o.domain != EXPAND_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model, found
