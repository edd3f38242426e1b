"""onnxruntime's ops that hide a softmax, decomposed into standard ops so that their softmax becomes
an ordinary site: `com.microsoft` `Attention` (BERT-style, packed QKV weights) and
`MultiHeadAttention` (Q, K, V separate, packed, or K, V already in heads: MHA_LAYOUTS), as
`onnxruntime.transformers`' optimizer writes them; the
int8 quantizer's `QAttention` and `QLinearSoftmax`; the `BiasSoftmax` fusion. (`GroupQueryAttention`,
with its KV-cache rules, has a module of its own: ort_gqa.py.)

Each node becomes a model-local function built for its attribute values and inputs, then inlined.
The body follows onnxruntime's CPU kernels: scores = Q·Kᵀ·scale + attention_bias + mask, where the
mask is additive, `mask_filter_value` (-10000 by default) at every masked key, so a fully masked
row gets uniform weights, as onnxruntime gives. A form this module does not decompose (rotary
embeddings and shared past buffers in Attention, other mask layouts, causal cross-attention)
returns the reason, and the op is reported as left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

from sit_onnx.graph.walk import attribute

DEFAULT_MASK_FILTER = -10000.0


class Body:
    """Nodes of a function body under construction, with fresh tensor names."""

    def __init__(self, prefix: str, elem_type: int = TensorProto.FLOAT):
        self.nodes: list[onnx.NodeProto] = []
        self.prefix, self.count, self.elem_type = prefix, 0, elem_type

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, **attrs) -> str | list[str]:
        if isinstance(outputs, int):
            names = [f"{self.prefix}_{op_type}_{self.count}_{i}" for i in range(outputs)]
        else:
            names = outputs
        self.count += 1
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if len(names) == 1 else names

    def ints(self, values: list[int]) -> str:
        return self.op("Constant", [], value=helper.make_tensor("v", TensorProto.INT64, [len(values)], values))

    def arange(self, count: str) -> str:
        """0, 1, ..., count - 1 (int64), from a [1] int64 tensor."""
        zero, one = self.op("Squeeze", [self.ints([0])]), self.op("Squeeze", [self.ints([1])])
        return self.op("Range", [zero, self.op("Squeeze", [count]), one])

    def scalar(self, value: float) -> str:
        """A scalar of the body's float type."""
        constant = self.op("Constant", [], value=helper.make_tensor("v", TensorProto.FLOAT, [], [value]))
        return self.op("Cast", [constant], to=self.elem_type)


def to_heads(b: Body, x: str, heads: int, size: int) -> str:
    """[B, S, heads*size] -> [B, heads, S, size]."""
    return b.op("Transpose", [b.op("Reshape", [x, b.ints([0, 0, heads, size])])], perm=[0, 2, 1, 3])


def merge_heads(b: Body, x: str, hidden: int, output: str) -> None:
    b.op("Reshape", [b.op("Transpose", [x], perm=[0, 2, 1, 3]), b.ints([0, 0, hidden])], [output])


def key_positions(b: Body, scores: str) -> tuple[str, str, str]:
    """Query index i [S, 1], key index j [1, T] (int64) and T, from the scores' shape [B, N, S, T]."""
    shape = b.op("Shape", [scores])
    s = b.op("Gather", [shape, b.ints([2])], axis=0)
    t = b.op("Gather", [shape, b.ints([3])], axis=0)
    i = b.op("Unsqueeze", [b.arange(s), b.ints([1])])
    j = b.op("Unsqueeze", [b.arange(t), b.ints([0])])
    return i, j, t


def _additive(b: Body, masked: str, scores: str, filter_value: float) -> str:
    """scores + filter_value where `masked` (bool, broadcastable) is true."""
    zero = b.scalar(0.0)
    return b.op("Add", [scores, b.op("Where", [masked, b.scalar(filter_value), zero])])


def _apply_mask(b: Body, scores: str, mask: str, rank: int, filter_value: float) -> str:
    """A key padding mask: [B] valid lengths, [2B] ends then starts, [B, T] or [B, S, T] 1/0."""
    if rank == 1:  # [B] ends, or [2B] ends then starts: zeros appended make the starts of [B] all 0
        _, j, _ = key_positions(b, scores)
        batch = b.op("Gather", [b.op("Shape", [scores]), b.ints([0])], axis=0)
        zeros = b.op("ConstantOfShape", [batch], value=helper.make_tensor("v", TensorProto.INT64, [1], [0]))
        padded = b.op("Concat", [b.op("Cast", [mask], to=TensorProto.INT64), zeros], axis=0)
        ends = b.op("Reshape", [b.op("Slice", [padded, b.ints([0]), batch]), b.ints([-1, 1, 1, 1])])
        twice = b.op("Mul", [batch, b.ints([2])])
        starts = b.op("Reshape", [b.op("Slice", [padded, batch, twice]), b.ints([-1, 1, 1, 1])])
        masked = b.op("Or", [b.op("GreaterOrEqual", [j, ends]), b.op("Less", [j, starts])])
        return _additive(b, masked, scores, filter_value)
    axes = [1, 2] if rank == 2 else [1]
    raw = b.op("Unsqueeze", [mask, b.ints(axes)])
    zero = b.op("Cast", [b.ints([0])], to=TensorProto.INT32)
    return _additive(b, b.op("Equal", [b.op("Cast", [raw], to=TensorProto.INT32), zero]), scores, filter_value)


def _causal(b: Body, scores: str, filter_value: float) -> str:
    """Key j masked for query i when j > i + past length (T - S)."""
    i, j, t = key_positions(b, scores)
    s = b.op("Gather", [b.op("Shape", [scores]), b.ints([2])], axis=0)
    offset = b.op("Sub", [t, s])
    return _additive(b, b.op("Greater", [j, b.op("Add", [i, offset])]), scores, filter_value)


def _attend(b: Body, q: str, k: str, v: str, scale: float, extras: dict) -> str:
    """softmax(Q·Kᵀ·scale + bias + masks)·V, in [B, N, S, size]."""
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = b.op("Mul", [scores, b.scalar(scale)])
    if extras.get("attention_bias"):
        scores = b.op("Add", [scores, extras["attention_bias"]])
    if extras.get("mask"):
        scores = _apply_mask(b, scores, extras["mask"], extras["mask_rank"], extras["filter"])
    if extras.get("unidirectional"):
        scores = _causal(b, scores, extras["filter"])
    probs = b.op("Softmax", [scores], axis=-1)
    return b.op("MatMul", [probs, v])


@dataclass(frozen=True)
class KnownTypes:
    """Every tensor's type that inference told and, derived once per model, ranks and dims (int,
    or None where symbolic)."""

    types: dict[str, onnx.TypeProto]
    ranks: dict[str, int]
    dims: dict[str, list]

    @classmethod
    def of(cls, types: dict[str, onnx.TypeProto]) -> KnownTypes:
        ranks, dims = {}, {}
        for name, proto in types.items():
            if proto.HasField("tensor_type") and proto.tensor_type.HasField("shape"):
                shape = proto.tensor_type.shape.dim
                ranks[name] = len(shape)
                dims[name] = [d.dim_value if d.HasField("dim_value") else None for d in shape]
        return cls(types, ranks, dims)

    def elem_type(self, name: str) -> int:
        return self.types[name].tensor_type.elem_type


def unknown_attribute_reason(node: onnx.NodeProto, known: set[str]) -> str:
    """Why an attribute outside `known` keeps the node from being decomposed: one a later
    onnxruntime added, whose meaning a decomposition would otherwise silently drop ("" if none)."""
    unknown = [found.name for found in node.attribute if found.name not in known]
    return f"attribute {unknown[0]} is not one sit-onnx knows; left as it is rather than dropped" if unknown else ""


def optional_input(node: onnx.NodeProto, index: int) -> str | None:
    return node.input[index] if len(node.input) > index and node.input[index] else None


def optional_output(node: onnx.NodeProto, index: int) -> str | None:
    return node.output[index] if len(node.output) > index and node.output[index] else None


def attention_body(node: onnx.NodeProto, known: KnownTypes) -> tuple[Body | None, str]:
    """com.microsoft Attention: (body, "") or (None, why it is not decomposed)."""
    if optional_input(node, 6):
        return None, "past_sequence_length is not decomposed yet"
    b = Body(node.name or "attention", known.elem_type(node.input[0]))
    x, weights = node.input[0], node.input[1]
    inputs = PackedInputs(x, weights, *(optional_input(node, i) for i in (2, 3, 4, 5)))
    return _packed_attention(b, node, known, inputs)


def quantized_attention_body(node: onnx.NodeProto, known: KnownTypes) -> tuple[Body | None, str]:
    """com.microsoft QAttention (dynamic quantization's attention): the projection as its kernel
    computes it (an integer product, then float(sum) * input_scale * weight_scale), then as
    Attention. Dequantizing first and multiplying in float differs by rounding only, but the int8
    model rounds again at every later DynamicQuantizeLinear: a real ALBERT drifted to min cosine
    0.998 from that alone."""
    b = Body(node.name or "qattention", known.elem_type(node.input[2]))
    zero_points = [optional_input(node, 6) or "", optional_input(node, 7) or ""]
    while zero_points and not zero_points[-1]:
        zero_points.pop()
    products = b.op("MatMulInteger", [node.input[0], node.input[1], *zero_points])
    scales = [b.op("Cast", [node.input[i]], to=TensorProto.FLOAT) for i in (3, 4)]
    real = b.op("Mul", [b.op("Cast", [products], to=TensorProto.FLOAT), b.op("Mul", scales)])
    if b.elem_type != TensorProto.FLOAT:
        real = b.op("Cast", [real], to=b.elem_type)
    mask, past = optional_input(node, 5), optional_input(node, 8)
    inputs = PackedInputs(node.input[0], node.input[1], node.input[2], mask, past, None, real)
    return _packed_attention(b, node, known, inputs)


@dataclass(frozen=True)
class PackedInputs:
    """What a packed-QKV attention reads, by tensor name; `projected`, where given, is x times the
    weights already computed (QAttention's integer product, scaled), the weights then only
    giving the shape."""

    x: str
    weights: str
    bias: str | None
    mask: str | None
    past: str | None
    attention_bias: str | None
    projected: str | None = None


def _packed_attention(b: Body, node: onnx.NodeProto, known: KnownTypes, inputs: PackedInputs):
    """softmax(Q·Kᵀ)·V with Q, K, V from one packed weight matrix: (body, "") or (None, why)."""
    ranks, dims = known.ranks, known.dims
    unsupported = [a for a in ("do_rotary", "past_present_share_buffer") if attribute(node, a, 0)]
    if unsupported:
        return None, f"{', '.join(unsupported)} is not decomposed yet"
    if inputs.past and not optional_output(node, 1):
        return None, "a past without the present output (onnxruntime's kernel refuses it)"
    heads = attribute(node, "num_heads")
    weights = dims.get(inputs.weights)
    if not weights or not all(isinstance(d, int) for d in weights):
        return None, "the packed QKV weights' shape is unknown"
    sizes = list(attribute(node, "qkv_hidden_sizes", []) or [weights[1] // 3] * 3)
    reason = heads_reason(node, {"query": sizes[0], "key": sizes[1], "value": sizes[2]})
    if reason:
        return None, reason
    head, v_head = sizes[0] // heads, sizes[2] // heads
    reason = _mask_rank_reason(inputs.mask, ranks, "mask_index")
    if reason:
        return None, reason
    qkv = inputs.projected or b.op("MatMul", [inputs.x, inputs.weights])
    if inputs.bias:
        qkv = b.op("Add", [qkv, inputs.bias])
    q, k, v = b.op("Split", [qkv, b.ints(sizes)], 3, axis=-1)
    q, k, v = to_heads(b, q, heads, head), to_heads(b, k, heads, head), to_heads(b, v, heads, v_head)
    if inputs.past:
        past = inputs.past
        k = b.op("Concat", [b.op("Squeeze", [b.op("Gather", [past, b.ints([0])], axis=0), b.ints([0])]), k], axis=2)
        v = b.op("Concat", [b.op("Squeeze", [b.op("Gather", [past, b.ints([1])], axis=0), b.ints([0])]), v], axis=2)
    if optional_output(node, 1):
        zero = b.ints([0])
        b.op("Concat", [b.op("Unsqueeze", [k, zero]), b.op("Unsqueeze", [v, zero])], [node.output[1]], axis=0)
    extras = _mask_extras(node, inputs.mask, ranks, inputs.attention_bias)
    context = _attend(b, q, k, v, attribute(node, "scale", 0.0) or head**-0.5, extras)
    merge_heads(b, context, sizes[2], node.output[0])
    return b, ""


def heads_reason(node: onnx.NodeProto, hidden: dict[str, int]) -> str:
    """Why the node's head counts cannot split its hidden sizes ("" when they can): onnxruntime's
    kernels refuse such a node at run time; a decomposition would divide by them."""
    counts = {"num_heads": attribute(node, "num_heads")}
    if node.op_type == "GroupQueryAttention":
        counts["kv_num_heads"] = attribute(node, "kv_num_heads")
    for name, count in counts.items():
        if not isinstance(count, int) or count <= 0:
            return f"{name} is {count}; it must be a positive number of heads"
    heads, kv_heads = counts["num_heads"], counts.get("kv_num_heads", 1)
    if heads % kv_heads:
        return f"num_heads {heads} is not a multiple of kv_num_heads {kv_heads}"
    for label, size in hidden.items():
        if size % heads:
            return f"the {label} size {size} is not a multiple of num_heads {heads}"
    return ""


def _mask_rank_reason(mask: str | None, ranks: dict, label: str) -> str:
    """Why this mask cannot be read ("" when it can): its layout is chosen by its rank."""
    if not mask or ranks.get(mask) in (1, 2, 3):
        return ""
    if ranks.get(mask) is None:
        return f"the rank of {label} is unknown (shape inference could not tell), and its layout goes by it"
    return f"a {ranks[mask]}-D {label} is not decomposed yet"


def _mask_extras(node: onnx.NodeProto, mask: str | None, ranks: dict, attention_bias: str | None) -> dict:
    """What the attention ops tell _attend alike: the additive bias, the mask and its rank,
    causality and the value masked positions get."""
    return {
        "attention_bias": attention_bias,
        "mask": mask,
        "mask_rank": ranks.get(mask),
        "unidirectional": attribute(node, "unidirectional", 0),
        "filter": attribute(node, "mask_filter_value", DEFAULT_MASK_FILTER),
    }


def _append_past(b: Body, node: onnx.NodeProto, k: str, v: str, past_key: str | None, past_value: str | None):
    """K and V after the past (along the sequence), also written to the present outputs 1 and 2."""
    if past_key and past_value:
        k, v = b.op("Concat", [past_key, k], axis=2), b.op("Concat", [past_value, v], axis=2)
    if optional_output(node, 1):
        b.op("Identity", [k], [node.output[1]])
    if optional_output(node, 2):
        b.op("Identity", [v], [node.output[2]])
    return k, v


def _shared_buffer(b: Body, node: onnx.NodeProto, k: str, v: str, past: tuple[str, str], beams: str | None):
    """MultiHeadAttention with `past_sequence_length` P, as onnxruntime's Whisper export writes it
    for beam search (its DecoderMaskedMultiHeadAttention path): past key and value are buffers of
    the maximum length shared with the present outputs, the S new keys written at P..P+S-1 and
    the first P+S attended. With `cache_indirection` [B, beams, max] a key or value before P is read
    from the beam the indirection names for that position (the beams of a batch row are rows
    b·beams + j), the new ones from the row's own."""
    start = b.op("Cast", [b.op("Reshape", [optional_input(node, 8), b.ints([1])])], to=TensorProto.INT64)
    end = b.op("Add", [start, b.op("Gather", [b.op("Shape", [k]), b.ints([2])], axis=0)])
    written = []
    for new, buffer, output in ((k, past[0], 1), (v, past[1], 2)):
        before = b.op("Slice", [buffer, b.ints([0]), start, b.ints([2])])
        after = b.op("Slice", [buffer, end, b.ints([2**62]), b.ints([2])])
        present = b.op("Concat", [before, new, after], axis=2)
        if optional_output(node, output):
            b.op("Identity", [present], [node.output[output]])
        read = _indirected(b, present, beams, start) if beams else present
        written.append(b.op("Slice", [read, b.ints([0]), end, b.ints([2])]))
    return written[0], written[1]


def _indirected(b: Body, buffer: str, beams: str, start: str) -> str:
    """`buffer` [B·beams, N, max, H] with each position t < `start` of row (b, j) taken from beam
    beams[b, j, t] of the same batch row."""
    shape = b.op("Shape", [buffer])
    split = b.op("Concat", [b.op("Slice", [b.op("Shape", [beams]), b.ints([0]), b.ints([2])]),
                            b.op("Slice", [shape, b.ints([1]), b.ints([4])])], axis=0)  # fmt: skip
    rows = b.op("Reshape", [buffer, split])  # [B, beams, N, max, H]
    index = b.op("Unsqueeze", [b.op("Cast", [beams], to=TensorProto.INT64), b.ints([2, 4])])
    gathered = b.op("GatherElements", [rows, b.op("Expand", [index, split])], axis=1)
    positions = b.op("Reshape", [b.arange(b.op("Gather", [shape, b.ints([2])], axis=0)), b.ints([1, 1, 1, -1, 1])])
    own = b.op("GreaterOrEqual", [positions, start])
    return b.op("Reshape", [b.op("Where", [own, rows, gathered]), shape])


MHA_LAYOUTS = {  # the ranks of query, key and value (0: absent) -> MultiHeadAttention's layout
    (3, 3, 3): "separate",  # [B, S, D] each
    (3, 4, 4): "bnsh",  # key and value already in heads, [B, N, L, H]: no bias added to them
    (3, 5, 0): "packed kv",  # key [B, L, N, 2, H]
    (5, 0, 0): "packed qkv",  # query [B, S, N, 3, H]
}


def _product(a: int | None, b: int | None) -> int | None:
    return a * b if isinstance(a, int) and isinstance(b, int) else None


def _mha_layout(node: onnx.NodeProto, known: KnownTypes) -> tuple[str, int, int] | str:
    """The layout of query, key and value and the query and value hidden sizes, or why not."""
    names = [optional_input(node, i) for i in range(3)]
    ranks = tuple(known.ranks.get(name) if name else 0 for name in names)
    layout = MHA_LAYOUTS.get(ranks)
    if layout is None:
        if None in ranks:
            return "the ranks of query, key and value are unknown (shape inference could not tell)"
        return f"query, key and value of ranks {ranks} (0: absent) are no layout MultiHeadAttention defines"
    query, key, value = (known.dims.get(name) if name else None for name in names)
    sizes = {  # per layout: the head counts its inputs hold, the query's hidden size, the value's
        "separate": lambda: ([], query[2], value[2]),
        "bnsh": lambda: ([key[1], value[1]], query[2], _product(value[1], value[3])),
        "packed kv": lambda: ([key[2]], query[2], _product(key[2], key[4])),
        "packed qkv": lambda: ([query[2]], _product(query[2], query[4]), _product(query[2], query[4])),
    }
    held, hidden_q, hidden_v = sizes[layout]()
    wrong = [count for count in held if count is not None and count != attribute(node, "num_heads")]
    if wrong:
        return f"key or value in heads hold {wrong[0]} heads, not num_heads {attribute(node, 'num_heads')}"
    if not isinstance(hidden_q, int) or not isinstance(hidden_v, int):
        return "the hidden size of query or value is unknown"
    return layout, hidden_q, hidden_v


def _mha_heads(b: Body, node: onnx.NodeProto, layout: str, heads: int, sizes: tuple[int, int]):
    """Q, K, V in heads, [B, N, S, H], from the node's layout, the bias (Q's, K's, V's parts)
    added where the layout takes it."""
    query, key, value = (optional_input(node, i) for i in range(3))
    hidden_q, hidden_v = sizes
    bias = optional_input(node, 3)
    parts = b.op("Split", [bias, b.ints([hidden_q, hidden_q, hidden_v])], 3, axis=0) if bias else [None] * 3
    if layout in ("packed qkv", "packed kv"):
        packed = query if layout == "packed qkv" else key
        count = 3 if layout == "packed qkv" else 2
        unpacked = [
            b.op("Squeeze", [x, b.ints([3])]) for x in b.op("Split", [packed, b.ints([1] * count)], count, axis=3)
        ]
        query, key, value = unpacked if layout == "packed qkv" else [query, *unpacked]
    head, v_head = hidden_q // heads, hidden_v // heads

    def in_heads(x: str, part: str | None, size: int, split: bool) -> str:
        if not split:  # [B, S, N, H] from a pack
            x = b.op("Add", [x, b.op("Reshape", [part, b.ints([heads, size])])]) if part else x
            return b.op("Transpose", [x], perm=[0, 2, 1, 3])
        return to_heads(b, b.op("Add", [x, part]) if part else x, heads, size)

    q = in_heads(query, parts[0], head, layout != "packed qkv")
    if layout == "bnsh":
        return q, key, value
    split = layout == "separate"
    return q, in_heads(key, parts[1], head, split), in_heads(value, parts[2], v_head, split)


def _causal_cross_reason(node: onnx.NodeProto, known: KnownTypes, layout: str) -> str:
    """unidirectional with as many keys as queries is a decoder's self-attention, masked from the
    end (key j hidden from query i where j > i + past); with another number of keys
    (cross-attention, with a past or not), onnxruntime's CPU kernel masks rows in a pattern no
    causal rule gives (seen with 4 queries over 6 keys: rows 0-2 see keys up to their own index,
    row 3 sees all): such a node, where the lengths are known, is left alone rather than decomposed
    into something else."""
    if not attribute(node, "unidirectional", 0) or layout == "packed qkv":
        return ""
    queries = (known.dims.get(node.input[0]) or [None, None])[1]
    keys = (known.dims.get(node.input[1]) or [None] * 3)[2 if layout == "bnsh" else 1]
    if isinstance(queries, int) and isinstance(keys, int) and queries != keys:
        return f"unidirectional over {keys} new keys for {queries} queries (cross-attention) is not decomposed"
    return ""


def _shared_buffer_reason(node: onnx.NodeProto) -> str:
    """What of the shared-buffer form (_shared_buffer) is not decomposed: the qk output, a
    cache_indirection without past_sequence_length, a past key without its value."""
    if optional_output(node, 3):
        return "the qk output is not decomposed yet"
    if optional_input(node, 9) and not optional_input(node, 8):
        return "cache_indirection without past_sequence_length is no form onnxruntime defines"
    if optional_input(node, 8) and bool(optional_input(node, 6)) != bool(optional_input(node, 7)):
        return "past_sequence_length with only one of past_key and past_value is not decomposed"
    return ""


def _past_reason(node: onnx.NodeProto) -> str:
    """A past cache onnxruntime does not run as one: half of it, or a past without both present
    outputs. Its kernel refuses the first, and the second in the shared-buffer form; outside it, its
    CPU kernel gives neither the result with the past nor the one without (measured), so there is
    no result to follow."""
    key, value = optional_input(node, 6), optional_input(node, 7)
    if bool(key) != bool(value):
        return "only one of past_key and past_value (onnxruntime's kernel refuses it)"
    if key and not (optional_output(node, 1) and optional_output(node, 2)):
        if optional_input(node, 8):
            return "a shared past without both present outputs (onnxruntime's kernel refuses it)"
        return "a past without both present outputs (onnxruntime's CPU kernel gives no defined result)"
    return ""


def multi_head_attention_body(node: onnx.NodeProto, known: KnownTypes):
    """com.microsoft MultiHeadAttention in each layout (MHA_LAYOUTS): (body, "") or (None, why).
    The packed layouts run on CUDA only in onnxruntime; their body is the separate layout's, the
    packed tensor split (checked against the CPU kernel on the same numbers unpacked)."""
    reason = _shared_buffer_reason(node) or _past_reason(node)
    if reason:
        return None, reason
    found = _mha_layout(node, known)
    if isinstance(found, str):
        return None, found
    layout, hidden_q, hidden_v = found
    reason = _causal_cross_reason(node, known, layout)
    if reason:
        return None, reason
    heads, mask = attribute(node, "num_heads"), optional_input(node, 4)
    reason = heads_reason(node, {"query": hidden_q, "value": hidden_v}) or _mask_rank_reason(
        mask, known.ranks, "key_padding_mask"
    )
    if reason:
        return None, reason
    b = Body(node.name or "mha", known.elem_type(node.input[0]))
    q, k, v = _mha_heads(b, node, layout, heads, (hidden_q, hidden_v))
    past = optional_input(node, 6), optional_input(node, 7)
    if optional_input(node, 8) and all(past):
        k, v = _shared_buffer(b, node, k, v, past, optional_input(node, 9))
    else:  # without a past, past_sequence_length and cache_indirection change nothing (cross-attention)
        k, v = _append_past(b, node, k, v, *past)
    extras = _mask_extras(node, mask, known.ranks, optional_input(node, 5))
    context = _attend(b, q, k, v, attribute(node, "scale", 0.0) or (hidden_q // heads) ** -0.5, extras)
    merge_heads(b, context, hidden_v, node.output[0])
    return b, ""


# the DecoderMaskedMultiHeadAttention input each MultiHeadAttention input takes: query, key, value,
# bias (its last), key_padding_mask (its mask_index), attention_bias, past key and value,
# past_sequence_length, cache_indirection (beam_width, its input 8, is the indirection's second dim)
DMMHA_AS_MHA = (0, 1, 2, 10, 3, 4, 5, 6, 7, 9)


def decoder_masked_mha_body(node: onnx.NodeProto, known: KnownTypes):
    """com.microsoft DecoderMaskedMultiHeadAttention (convert_generation's decoding attention, one
    query per row over shared buffers): onnxruntime's CPU kernel computes what MultiHeadAttention
    does with the same inputs, bit for bit (measured), so the node is decomposed as that one."""
    if attribute(node, "output_qk", 0) or optional_output(node, 3):
        return None, "the qk output is not decomposed yet"
    if optional_input(node, 5) and not attribute(node, "past_present_share_buffer", 0):
        return None, "a past without past_present_share_buffer=1 (onnxruntime's CPU kernel refuses it)"
    if optional_input(node, 5) and not optional_input(node, 7):
        return None, "a shared past without past_sequence_length (onnxruntime's kernel refuses it)"
    inputs = [node.input[i] if i < len(node.input) else "" for i in DMMHA_AS_MHA]
    while inputs and not inputs[-1]:
        inputs.pop()
    kept = [a for a in node.attribute if a.name in ("num_heads", "scale", "mask_filter_value")]
    mha = helper.make_node("MultiHeadAttention", inputs, list(node.output), node.name, domain=node.domain)
    mha.attribute.extend(kept)
    return multi_head_attention_body(mha, known)


def _softmax(b: Body, x: str, axis: int, coerced: bool, rank: int | None, output: str | None = None) -> str:
    """Softmax along `axis`; `coerced` is opset < 13's meaning (over every dim from `axis` on, as one
    row), written as Flatten, Softmax, Reshape unless `axis` is the last dim anyway."""
    named = [output] if output else 1
    if not coerced or (rank is not None and axis % rank == rank - 1):
        return b.op("Softmax", [x], named, axis=axis)
    rows = b.op("Softmax", [b.op("Flatten", [x], axis=axis)], axis=-1)
    return b.op("Reshape", [rows, b.op("Shape", [x])], named)


def qlinear_softmax_body(node: onnx.NodeProto, known: KnownTypes):
    """com.microsoft QLinearSoftmax (static quantization's softmax): DequantizeLinear, Softmax with
    the meaning of the opset it was made from, QuantizeLinear."""
    b = Body(node.name or "qsoftmax", TensorProto.FLOAT)
    real = b.op("DequantizeLinear", [name for name in node.input[:3] if name])
    coerced = attribute(node, "opset", 13) < 13
    probs = _softmax(b, real, attribute(node, "axis", -1), coerced, known.ranks.get(node.input[0]))
    b.op("QuantizeLinear", [probs, node.input[3], node.input[4]], [node.output[0]])
    return b, ""


def bias_softmax_body(node: onnx.NodeProto, known: KnownTypes):
    """com.microsoft BiasSoftmax (onnxruntime's fusion of Add then Softmax): the Add again, then a
    softmax over every dim from `axis` on, as its kernel computes it."""
    b = Body(node.name or "biassoftmax")  # the body makes no constant, so needs no type
    summed = b.op("Add", [node.input[0], node.input[1]])
    _softmax(b, summed, attribute(node, "axis", 1), True, known.ranks.get(node.input[0]), node.output[0])
    return b, ""


TYPE_FREE = {"QLinearSoftmax", "BiasSoftmax"}  # their bodies need no input's type: a rank, where known, only tidies
