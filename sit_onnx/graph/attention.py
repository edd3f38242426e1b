"""Ops that hide a softmax: ONNX's own `Attention` (opset 23+) and `FlexAttention` (ai.onnx.preview)
are expanded into their function body (ONNX defines one per attribute and input combination),
onnxruntime's `com.microsoft` attention, quantized and fused softmax ops into standard ops
(ort_attention.py); their Softmax is then an ordinary site. The other fused attention ops, and
forms not decomposed, are reported as left alone with why, so a conversion never claims success
over a softmax it did not see.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import onnx
from onnx import inliner

from sit_onnx.graph.attribute_types import ort_schema
from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS
from sit_onnx.graph.ort_attention import (
    TYPE_FREE,
    KnownTypes,
    attention_body,
    bias_softmax_body,
    decoder_masked_mha_body,
    multi_head_attention_body,
    qlinear_softmax_body,
    quantized_attention_body,
    unknown_attribute_reason,
)
from sit_onnx.graph.ort_gqa import group_query_attention_body
from sit_onnx.graph.symbolic import symbolic_types, types_of
from sit_onnx.graph.walk import graph_protos

DECOMPOSERS = {  # onnxruntime's ops decomposed into standard ops (ort_attention.py, ort_gqa.py)
    "Attention": attention_body,
    "QAttention": quantized_attention_body,
    "QLinearSoftmax": qlinear_softmax_body,
    "BiasSoftmax": bias_softmax_body,
    "MultiHeadAttention": multi_head_attention_body,
    "DecoderMaskedMultiHeadAttention": decoder_masked_mha_body,
    "GroupQueryAttention": group_query_attention_body,
}
ATTRIBUTES = {  # what each decomposer reads; another attribute (a later onnxruntime's) leaves the op alone
    "Attention": {
        "num_heads",
        "scale",
        "mask_filter_value",
        "unidirectional",
        "qkv_hidden_sizes",
        "do_rotary",
        "rotary_embedding_dim",
        "past_present_share_buffer",
    },
    "QAttention": {
        "num_heads",
        "scale",
        "mask_filter_value",
        "unidirectional",
        "do_rotary",
        "past_present_share_buffer",
    },
    "MultiHeadAttention": {"num_heads", "scale", "mask_filter_value", "unidirectional"},
    "DecoderMaskedMultiHeadAttention": {
        "num_heads",
        "scale",
        "mask_filter_value",
        "past_present_share_buffer",
        "output_qk",
    },
    "QLinearSoftmax": {"axis", "opset"},
    "BiasSoftmax": {"axis", "is_inner_broadcast"},
}  # fmt: skip  (GroupQueryAttention checks its own: ort_gqa.py)
EXPAND_DOMAIN = "sit_onnx.expand"  # the temporary functions' domain; gone once inlined
FUSED_ATTENTION = {  # onnxruntime's ops that hold a softmax: decomposed (ort_attention.py) or reported
    ("com.microsoft", "Attention"),
    ("com.microsoft", "QAttention"),
    ("com.microsoft", "QLinearSoftmax"),
    ("com.microsoft", "BiasSoftmax"),
    ("com.microsoft", "DecoderAttention"),
    ("com.microsoft", "DecoderMaskedSelfAttention"),
    ("com.microsoft", "LongformerAttention"),
    ("com.microsoft", "QOrderedAttention"),
    ("com.microsoft", "QOrderedLongformerAttention"),
    ("com.microsoft", "DynamicSparseAttention"),
    ("com.microsoft", "SparsePagedAttention"),
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


ONNX_ATTENTION = {  # ONNX's own ops that hold a softmax, expanded by the function body ONNX gives them
    ("", "Attention"),
    ("ai.onnx.preview", "FlexAttention"),  # score_mod / prob_mod subgraphs included
}


def _schema_domain(domain: str) -> str:
    """The domain as onnx's schemas and opset maps name it: "ai.onnx" is the default domain, ""."""
    return "" if domain in DEFAULT_DOMAINS else domain


def _is_standard_attention(node: onnx.NodeProto) -> bool:
    return (_schema_domain(node.domain), node.op_type) in ONNX_ATTENTION


def is_attention_op(node: onnx.NodeProto) -> bool:
    """An op that holds a softmax this module expands or reports: ONNX's or onnxruntime's."""
    return _is_standard_attention(node) or (node.domain, node.op_type) in FUSED_ATTENTION


def _known_types(model: onnx.ModelProto, wanted: set[str]) -> KnownTypes:
    """Every tensor's type that shape inference can tell (inputs, initializers, intermediates).
    onnx's inference stops at onnxruntime's own ops (EmbedLayerNormalization before a fused
    Attention, say); onnxruntime's symbolic shape inference, which knows most of them, fills the
    gaps. Past an op it does not know either (QEmbedLayerNormalization), it can only guess a rank
    (that of the op's first input): a guess gives the element type, never the rank a decomposition
    is chosen by."""
    try:
        types = types_of(onnx.shape_inference.infer_shapes(model))
    except onnx.shape_inference.InferenceError:  # a node onnx finds malformed: what the model declares
        types = types_of(model)
    for guess in (False, True):
        if all(name in types and _has_shape(types[name]) for name in wanted):
            break
        inferred = symbolic_types(model, guess)
        if guess:
            types = {**{name: _element_type_only(t) for name, t in inferred.items()}, **types}
        else:  # onnx's shaped types first; a type without shape (as the float16 converters declare
            # them) gives way to the symbolic one, which has its rank
            types = {**types, **inferred, **{name: t for name, t in types.items() if _has_shape(t)}}
    if not all(name in types and _has_shape(types[name]) for name in wanted):
        types = {**_opaque_subgraph_types(model, types, wanted), **types}
    return KnownTypes.of({**types, **_embedding_mask_types(model, types)})


def _opaque_subgraph_types(model: onnx.ModelProto, outer: dict, wanted: set[str]) -> dict[str, onnx.TypeProto]:
    """Types inside the subgraphs of ops onnx has no schema for, which no inference enters:
    onnxruntime's GreedySearch/BeamSearch decoder, where convert_generation's optimizer fuses
    Attention. Each such subgraph is inferred as a model of its own, the outer tensors it reads
    declared as its inputs."""
    found: dict[str, onnx.TypeProto] = {}
    for graph in graph_protos(model.graph):
        for node in graph.node:
            if onnx.defs.has(node.op_type, _schema_domain(node.domain)):
                continue  # If, Loop, Scan: onnx's inference enters them
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH and _reads_any(attribute.g, wanted):
                    found.update(_known_types(_standalone(model, attribute.g, {**outer, **found}), wanted).types)
    return found


def _reads_any(graph: onnx.GraphProto, names: set[str]) -> bool:
    return any(name in names for sub in graph_protos(graph) for node in sub.node for name in node.input)


def _standalone(model: onnx.ModelProto, graph: onnx.GraphProto, outer: dict) -> onnx.ModelProto:
    """`graph` as a model of its own (no weights copied twice: the subgraph keeps its own), with
    the outer tensors it reads as typed inputs."""
    own = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    own |= {name for sub in graph_protos(graph) for node in sub.node for name in node.output}
    read = {name for sub in graph_protos(graph) for node in sub.node for name in node.input if name}
    lonely = sorted(name for name in read - own if name in outer)
    copy = onnx.GraphProto()
    copy.CopyFrom(graph)
    copy.input.extend(onnx.helper.make_value_info(name, outer[name]) for name in lonely)
    return onnx.helper.make_model(copy, opset_imports=model.opset_import, ir_version=model.ir_version)


def _element_type_only(proto: onnx.TypeProto) -> onnx.TypeProto:
    return onnx.helper.make_tensor_type_proto(proto.tensor_type.elem_type, None)


EMBEDDINGS = {"EmbedLayerNormalization", "QEmbedLayerNormalization"}  # output 1: mask_index, one length per batch row


def _embedding_mask_types(model: onnx.ModelProto, types: dict) -> dict[str, onnx.TypeProto]:
    """The mask_index of onnxruntime's fused embeddings is [batch] by definition, where inference
    could not tell its rank."""
    masks = {}
    for node in model.graph.node:
        if node.domain == "com.microsoft" and node.op_type in EMBEDDINGS and len(node.output) > 1 and node.output[1]:
            known = types.get(node.output[1])
            if known is None or not _has_shape(known):
                masks[node.output[1]] = onnx.helper.make_tensor_type_proto(onnx.TensorProto.INT32, ["batch"])
    return masks


def _has_shape(proto: onnx.TypeProto) -> bool:
    return proto.tensor_type.HasField("shape")


def _standard_body(node: onnx.NodeProto, opsets: dict[str, int], known: KnownTypes):
    """The function body ONNX defines for this node's attributes and input types."""
    domain = _schema_domain(node.domain)
    version = opsets.get(domain, 1)
    try:
        schema = onnx.defs.get_schema(node.op_type, version, domain)
    except onnx.defs.SchemaError:
        return None, f"ONNX defines no {node.op_type} at the model's opset {version}"
    input_types = [known.types[name].SerializeToString() if name else b"" for name in node.input]
    body = onnx.FunctionProto.FromString(schema.get_context_dependent_function(node.SerializeToString(), input_types))
    if not body.node:  # an input type outside the schema's (or an attribute twice): an empty body, not an error
        types = ", ".join(f"{name}: {_type_name(known.types[name])}" for name in node.input if name)
        return None, f"ONNX gives no expansion for these input types ({types})"
    return body, ""


def _type_name(proto: onnx.TypeProto) -> str:
    """ "uint4", "float": a tensor type as the report names it."""
    return onnx.helper.tensor_dtype_to_string(proto.tensor_type.elem_type).removeprefix("TensorProto.").lower()


@functools.cache
def _required_inputs(op_type: str) -> list[tuple[int, str]]:
    """(position, name) of the inputs a decomposed op cannot go without, from the installed
    onnxruntime's own schema (the latest version)."""
    schema = ort_schema(op_type) if op_type in DECOMPOSERS else None
    return [] if schema is None else [(i, p.name) for i, p in enumerate(schema.inputs) if p.option.name == "Single"]


def missing_required_input(node: onnx.NodeProto) -> str | None:
    """The first input the op's schema requires that the node lacks, as "weights (input 1)"; a
    decomposition reads them by position (the fuzzer's one-input Attention died of an IndexError)."""
    for position, name in _required_inputs(node.op_type):
        if len(node.input) <= position or not node.input[position]:
            return f"{name} (input {position})"
    return None


def _ort_body(node: onnx.NodeProto, opsets: dict[str, int], known: KnownTypes):
    opset = opsets[""]
    if opset < 13:
        return None, "the model's opset is below 13"
    missing = missing_required_input(node)
    if missing:
        return None, f"its required input {missing} is missing"
    read = ATTRIBUTES.get(node.op_type)  # GroupQueryAttention's body checks its own
    reason = unknown_attribute_reason(node, read) if read else ""
    if reason:
        return None, reason
    body, reason = DECOMPOSERS[node.op_type](node, known)
    if body is None:
        return None, reason
    inputs = list(dict.fromkeys(name for name in node.input if name))
    outputs = [name for name in node.output if name]
    function = onnx.helper.make_function(
        EXPAND_DOMAIN, "f", inputs, outputs, body.nodes, [onnx.helper.make_opsetid("", opset)]
    )
    return function, ""


def _label(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def _body(node: onnx.NodeProto, opsets: dict[str, int], known: KnownTypes) -> tuple[onnx.FunctionProto | None, str]:
    """The node's expansion, or why there is none (opsets: the model's version of each domain)."""
    if not node.input or not node.input[0]:
        return None, "its first input (the query, or the packed input) is missing"
    typed = [] if node.domain == "com.microsoft" and node.op_type in TYPE_FREE else node.input
    missing = [name for name in typed if name and name not in known.types]
    if missing:
        return None, f"the types of {', '.join(missing)} are unknown (shape inference could not tell)"
    return _expandable(node)(node, opsets, known)


def _expandable(node: onnx.NodeProto):
    if _is_standard_attention(node):
        return _standard_body
    if node.domain == "com.microsoft" and node.op_type in DECOMPOSERS:
        return _ort_body
    return None


def _name_body_nodes(body: onnx.FunctionProto, owner: str) -> None:
    """Name the body's unnamed nodes after the op they expand, so that the softmax inside is a site
    the report and `--nodes` can name (ONNX's function bodies and ours leave nodes unnamed)."""
    for position, node in enumerate(body.node):
        if not node.name:
            node.name = f"{owner}/{node.op_type}_{position}"


def _left_alone(model: onnx.ModelProto) -> list[AttentionOp]:
    """The fused attention ops with no decomposition, in every graph."""
    return [
        AttentionOp(
            node.name,
            _label(node),
            graph.name,
            False,
            f"onnxruntime's fused {_label(node)}: not decomposed by sit-onnx yet",
        )
        for graph in graph_protos(model.graph)
        for node in graph.node
        if not _expandable(node) and (node.domain, node.op_type) in FUSED_ATTENTION
    ]


def _call_body(model: onnx.ModelProto, node: onnx.NodeProto, body: onnx.FunctionProto, index: int) -> None:
    """Turn the node into a call of its body, a model-local function inlined afterwards."""
    standard = _is_standard_attention(node)
    body.name, body.domain = f"{node.op_type}_{index}", EXPAND_DOMAIN
    _name_body_nodes(body, node.name or f"{node.op_type}_{index}")
    model.functions.append(body)
    node.op_type, node.domain = body.name, EXPAND_DOMAIN
    del node.attribute[:]  # the body was made for these attribute values
    if not standard:  # our decompositions take the non-empty inputs and outputs, in order
        kept_in, kept_out = [n for n in node.input if n], [n for n in node.output if n]
        del node.input[:], node.output[:]
        node.input.extend(dict.fromkeys(kept_in))
        node.output.extend(kept_out)


def expand_attention(model: onnx.ModelProto, opset: int) -> tuple[onnx.ModelProto, list[AttentionOp]]:
    """Expand the attention ops that have a decomposition (ONNX's Attention and FlexAttention,
    onnxruntime's fused and quantized ones), in the main graph and in If/Loop/Scan bodies alike, and
    list every attention op met, expanded or not and why."""
    found = _left_alone(model)
    candidates = [(graph, node) for graph in graph_protos(model.graph) for node in graph.node if _expandable(node)]
    if not candidates:
        return model, found
    known = _known_types(model, {name for _, n in candidates for name in n.input if name})
    opsets = {**{_schema_domain(o.domain): o.version for o in model.opset_import}, "": opset}
    targets = []
    for index, (graph, node) in enumerate(candidates):
        label = _label(node)
        body, reason = _body(node, opsets, known)
        if body is None:
            found.append(AttentionOp(node.name, label, graph.name, False, reason))
            continue
        _call_body(model, node, body, index)
        targets.append((EXPAND_DOMAIN, body.name))
        found.append(AttentionOp(node.name, label, graph.name, True))
    if targets:
        model.opset_import.append(onnx.helper.make_opsetid(EXPAND_DOMAIN, 1))
        model = inliner.inline_selected_functions(model, targets, exclude=False)
        kept = [o for o in model.opset_import if o.domain != EXPAND_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model, found
