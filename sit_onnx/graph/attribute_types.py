"""Attributes typed as their op's schema declares them, checked before the pass reads any.

A Softmax whose `axis` is a list of floats, or a GroupQueryAttention whose `num_heads` is a
string, is no model onnxruntime loads ("Mismatched attribute type"); the matchers and the
attention decomposers read such values as numbers and stopped the pass with an internal error
(found by fuzzing attribute types). The schemas are onnx's for the standard domain and
onnxruntime's own for its com.microsoft ops; an attribute no schema declares is left to the
checker's note, as before.
"""

from __future__ import annotations

from functools import cache

import onnx

from sit_onnx.graph.load import default_opset
from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS
from sit_onnx.graph.validate import node_label
from sit_onnx.graph.walk import graph_protos

ORT_DOMAIN = "com.microsoft"
TYPE_NAMES = onnx.AttributeProto.AttributeType.Name


@cache
def _onnx_types(op_type: str, version: int) -> dict[str, int]:
    try:
        schema = onnx.defs.get_schema(op_type, max_inclusive_version=version, domain="")
    except onnx.defs.SchemaError:  # an op ONNX does not define: refused, or noted, elsewhere
        return {}
    return {name: int(a.type) for name, a in schema.attributes.items()}


@cache
def _ort_schemas() -> dict:
    """onnxruntime's com.microsoft schemas by op, the newest of each ({} where this build hides them)."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        schemas = [s for s in ort_state.get_all_operator_schema() if s.domain == ORT_DOMAIN]
    except (ImportError, AttributeError):
        return {}
    return {schema.name: schema for schema in sorted(schemas, key=lambda schema: schema.since_version)}


def ort_schema(op_type: str):
    """onnxruntime's com.microsoft schema of an op (the newest: each has had one version so far),
    or None where it has none."""
    return _ort_schemas().get(op_type)


@cache
def _ort_types(op_type: str) -> dict[str, int]:
    schema = ort_schema(op_type)
    return {} if schema is None else {name: int(a.type) for name, a in schema.attributes.items()}


def _declared(node: onnx.NodeProto, opset: int) -> dict[str, int]:
    if node.domain in DEFAULT_DOMAINS:
        return _onnx_types(node.op_type, opset)
    if node.domain == ORT_DOMAIN:
        return _ort_types(node.op_type)
    return {}


def mistyped_attribute(model: onnx.ModelProto) -> str | None:
    """The first attribute, in any graph, whose type is not the one its op's schema declares, said
    in words; None when every declared attribute has its type."""
    opset = default_opset(model)
    for graph in graph_protos(model.graph):
        for node in graph.node:
            declared = _declared(node, opset)
            for attribute in node.attribute:
                wanted = declared.get(attribute.name)
                if wanted is not None and attribute.type != wanted:
                    return (
                        f"node {node_label(node)!r} gives its {node.op_type} attribute {attribute.name!r} as "
                        f"{TYPE_NAMES(attribute.type)}, where the op takes {TYPE_NAMES(wanted)}"
                    )
    return None
