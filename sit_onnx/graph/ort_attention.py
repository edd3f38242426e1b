"""onnxruntime's ops that hide a softmax, decomposed into standard ops so that their softmax becomes
an ordinary site: `com.microsoft` `Attention` (BERT-style, packed QKV weights),
`MultiHeadAttention` (separate Q, K, V) and `GroupQueryAttention`, as `onnxruntime.transformers`'
optimizer writes them; the int8 quantizer's `QAttention` and `QLinearSoftmax`; the `BiasSoftmax`
fusion.

Each node becomes a model-local function built for its attribute values and inputs, then inlined.
The body follows onnxruntime's CPU kernels: scores = Q·Kᵀ·scale + attention_bias + mask, where the
mask is additive, `mask_filter_value` (-10000 by default) at every masked key, so a fully masked
row gets uniform weights, as onnxruntime gives. A form this module does not decompose (rotary
embeddings, shared past buffers, packed or 4-D key/value, other mask layouts) returns the reason,
and the op is reported as left alone.
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

    def scalar(self, value: float) -> str:
        """A scalar of the body's float type."""
        constant = self.op("Constant", [], value=helper.make_tensor("v", TensorProto.FLOAT, [], [value]))
        return self.op("Cast", [constant], to=self.elem_type)


def _heads(b: Body, x: str, heads: int, size: int) -> str:
    """[B, S, heads*size] -> [B, heads, S, size]."""
    return b.op("Transpose", [b.op("Reshape", [x, b.ints([0, 0, heads, size])])], perm=[0, 2, 1, 3])


def _merge_heads(b: Body, x: str, hidden: int, output: str) -> None:
    b.op("Reshape", [b.op("Transpose", [x], perm=[0, 2, 1, 3]), b.ints([0, 0, hidden])], [output])


def _key_positions(b: Body, scores: str) -> tuple[str, str, str]:
    """Query index i [S, 1], key index j [1, T] (int64) and T, from the scores' shape [B, N, S, T]."""
    shape = b.op("Shape", [scores])
    s = b.op("Gather", [shape, b.ints([2])], axis=0)
    t = b.op("Gather", [shape, b.ints([3])], axis=0)
    zero, one = b.ints([0]), b.ints([1])
    i = b.op("Unsqueeze", [b.op("Range", [b.op("Squeeze", [zero]), b.op("Squeeze", [s]), b.op("Squeeze", [one])]), one])
    j = b.op(
        "Unsqueeze", [b.op("Range", [b.op("Squeeze", [zero]), b.op("Squeeze", [t]), b.op("Squeeze", [one])]), zero]
    )
    return i, j, t


def _additive(b: Body, masked: str, scores: str, filter_value: float) -> str:
    """scores + filter_value where `masked` (bool, broadcastable) is true."""
    zero = b.scalar(0.0)
    return b.op("Add", [scores, b.op("Where", [masked, b.scalar(filter_value), zero])])


def _apply_mask(b: Body, scores: str, mask: str, rank: int, filter_value: float) -> str:
    """A key padding mask: [B] valid lengths, [2B] ends then starts, [B, T] or [B, S, T] 1/0."""
    if rank == 1:  # [B] ends, or [2B] ends then starts: zeros appended make the starts of [B] all 0
        _, j, _ = _key_positions(b, scores)
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
    i, j, t = _key_positions(b, scores)
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


def _input(node: onnx.NodeProto, index: int) -> str | None:
    return node.input[index] if len(node.input) > index and node.input[index] else None


def _output(node: onnx.NodeProto, index: int) -> str | None:
    return node.output[index] if len(node.output) > index and node.output[index] else None


def attention_body(node: onnx.NodeProto, known: KnownTypes) -> tuple[Body | None, str]:
    """com.microsoft Attention: (body, "") or (None, why it is not decomposed)."""
    if _input(node, 6):
        return None, "past_sequence_length is not decomposed yet"
    b = Body(node.name or "attention", known.elem_type(node.input[0]))
    x, weights = node.input[0], node.input[1]
    inputs = PackedInputs(x, weights, _input(node, 2), _input(node, 3), _input(node, 4), _input(node, 5))
    return _packed_attention(b, node, known, inputs)


def quantized_attention_body(node: onnx.NodeProto, known: KnownTypes) -> tuple[Body | None, str]:
    """com.microsoft QAttention (dynamic quantization's attention): the projection as its kernel
    computes it (an integer product, then float(sum) * input_scale * weight_scale), then as
    Attention. Dequantizing first and multiplying in float differs by rounding only, but the int8
    model rounds again at every later DynamicQuantizeLinear: a real ALBERT drifted to min cosine
    0.998 from that alone."""
    b = Body(node.name or "qattention", known.elem_type(node.input[2]))
    zero_points = [_input(node, 6) or "", _input(node, 7) or ""]
    while zero_points and not zero_points[-1]:
        zero_points.pop()
    products = b.op("MatMulInteger", [node.input[0], node.input[1], *zero_points])
    scales = [b.op("Cast", [node.input[i]], to=TensorProto.FLOAT) for i in (3, 4)]
    real = b.op("Mul", [b.op("Cast", [products], to=TensorProto.FLOAT), b.op("Mul", scales)])
    if b.elem_type != TensorProto.FLOAT:
        real = b.op("Cast", [real], to=b.elem_type)
    inputs = PackedInputs(node.input[0], node.input[1], node.input[2], _input(node, 5), _input(node, 8), None, real)
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
    heads = attribute(node, "num_heads")
    weights = dims.get(inputs.weights)
    if not weights or not all(isinstance(d, int) for d in weights):
        return None, "the packed QKV weights' shape is unknown"
    sizes = list(attribute(node, "qkv_hidden_sizes", []) or [weights[1] // 3] * 3)
    reason = _heads_reason(node, {"query": sizes[0], "key": sizes[1], "value": sizes[2]})
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
    q, k, v = _heads(b, q, heads, head), _heads(b, k, heads, head), _heads(b, v, heads, v_head)
    if inputs.past:
        past = inputs.past
        k = b.op("Concat", [b.op("Squeeze", [b.op("Gather", [past, b.ints([0])], axis=0), b.ints([0])]), k], axis=2)
        v = b.op("Concat", [b.op("Squeeze", [b.op("Gather", [past, b.ints([1])], axis=0), b.ints([0])]), v], axis=2)
    if _output(node, 1):
        zero = b.ints([0])
        b.op("Concat", [b.op("Unsqueeze", [k, zero]), b.op("Unsqueeze", [v, zero])], [node.output[1]], axis=0)
    extras = _mask_extras(node, inputs.mask, ranks, inputs.attention_bias)
    context = _attend(b, q, k, v, attribute(node, "scale", 0.0) or head**-0.5, extras)
    _merge_heads(b, context, sizes[2], node.output[0])
    return b, ""


def _heads_reason(node: onnx.NodeProto, hidden: dict[str, int]) -> str:
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
    if _output(node, 1):
        b.op("Identity", [k], [node.output[1]])
    if _output(node, 2):
        b.op("Identity", [v], [node.output[2]])
    return k, v


def multi_head_attention_body(node: onnx.NodeProto, known: KnownTypes):
    """com.microsoft MultiHeadAttention with 3-D query, key and value: (body, "") or (None, why)."""
    ranks, dims = known.ranks, known.dims
    query, key, value = _input(node, 0), _input(node, 1), _input(node, 2)
    if not (key and value) or ranks.get(query) != 3 or ranks.get(key) != 3 or ranks.get(value) != 3:
        return None, "packed QKV/KV or 4-D key/value inputs are not decomposed yet"
    if any(_input(node, i) for i in (8, 9)) or any(_output(node, i) for i in (3,)):
        return None, "past_sequence_length, cache_indirection or the qk output are not decomposed yet"
    hidden_q, hidden_v = (dims.get(query) or [None] * 3)[2], (dims.get(value) or [None] * 3)[2]
    if not isinstance(hidden_q, int) or not isinstance(hidden_v, int):
        return None, "the hidden size of query or value is unknown"
    heads = attribute(node, "num_heads")
    reason = _heads_reason(node, {"query": hidden_q, "value": hidden_v}) or _mask_rank_reason(
        _input(node, 4), ranks, "key_padding_mask"
    )
    if reason:
        return None, reason
    head, v_head = hidden_q // heads, hidden_v // heads
    mask = _input(node, 4)
    b = Body(node.name or "mha", known.elem_type(query))
    bias = _input(node, 3)
    if bias:
        bq, bk, bv = b.op("Split", [bias, b.ints([hidden_q, hidden_q, hidden_v])], 3, axis=0)
        query, key, value = b.op("Add", [query, bq]), b.op("Add", [key, bk]), b.op("Add", [value, bv])
    q, k, v = _heads(b, query, heads, head), _heads(b, key, heads, head), _heads(b, value, heads, v_head)
    past_key, past_value = _input(node, 6), _input(node, 7)
    k, v = _append_past(b, node, k, v, past_key, past_value)
    extras = _mask_extras(node, mask, ranks, _input(node, 5))
    context = _attend(b, q, k, v, attribute(node, "scale", 0.0) or head**-0.5, extras)
    _merge_heads(b, context, hidden_v, node.output[0])
    return b, ""


def _repeat_heads(b: Body, x: str, group: int, heads: int, size: int) -> str:
    """[B, kv_heads, T, size] -> [B, heads, T, size], kv head h serving query heads h*group ... (h+1)*group-1."""
    if group == 1:
        return x
    shape = b.op("Shape", [x])
    front, back = b.op("Slice", [shape, b.ints([0]), b.ints([2])]), b.op("Slice", [shape, b.ints([2]), b.ints([4])])
    expanded = b.op(
        "Expand", [b.op("Unsqueeze", [x, b.ints([2])]), b.op("Concat", [front, b.ints([group]), back], axis=0)]
    )
    return b.op("Reshape", [expanded, b.ints([0, heads, -1, size])])


GQA_UNSUPPORTED = ("local_window_size", "smooth_softmax", "qk_output")


def _rotate(b: Body, x: str, cos: str, sin: str, rotary: int, head: int, interleaved: bool) -> str:
    """Rotary embedding of x [B, N, S, head] over its first `rotary` dims, with cos/sin already
    gathered for the positions and broadcastable to [B, N, S, rotary/2]; the rest passes."""
    half = rotary // 2
    part = b.op("Slice", [x, b.ints([0]), b.ints([rotary]), b.ints([-1])]) if rotary < head else x
    if interleaved:  # pairs (x0, x1), (x2, x3), ...
        pairs = b.op("Reshape", [part, b.ints([0, 0, 0, half, 2])])
        x1 = b.op("Squeeze", [b.op("Slice", [pairs, b.ints([0]), b.ints([1]), b.ints([-1])]), b.ints([-1])])
        x2 = b.op("Squeeze", [b.op("Slice", [pairs, b.ints([1]), b.ints([2]), b.ints([-1])]), b.ints([-1])])
    else:  # halves (x[:half], x[half:])
        x1 = b.op("Slice", [part, b.ints([0]), b.ints([half]), b.ints([-1])])
        x2 = b.op("Slice", [part, b.ints([half]), b.ints([rotary]), b.ints([-1])])
    first = b.op("Sub", [b.op("Mul", [x1, cos]), b.op("Mul", [x2, sin])])
    second = b.op("Add", [b.op("Mul", [x2, cos]), b.op("Mul", [x1, sin])])
    if interleaved:
        stacked = b.op(
            "Concat", [b.op("Unsqueeze", [first, b.ints([-1])]), b.op("Unsqueeze", [second, b.ints([-1])])], axis=-1
        )
        rotated = b.op("Reshape", [stacked, b.ints([0, 0, 0, rotary])])
    else:
        rotated = b.op("Concat", [first, second], axis=-1)
    if rotary == head:
        return rotated
    return b.op("Concat", [rotated, b.op("Slice", [x, b.ints([rotary]), b.ints([head]), b.ints([-1])])], axis=-1)


def _rotary_tables(b: Body, node: onnx.NodeProto, start: str, length: str) -> tuple[str, str]:
    """cos and sin rows for the new tokens' positions (position_ids, else start .. start+length-1),
    shaped to broadcast over [B, N, S, rotary/2]."""
    position_ids = _input(node, 9)
    if position_ids:
        positions, axes = b.op("Cast", [position_ids], to=TensorProto.INT64), [1]  # [B, S] -> [B, 1, S, r]
    else:
        positions, axes = b.op("Range", [start, b.op("Add", [start, length]), b.op("Squeeze", [b.ints([1])])]), [0, 1]
    tables = [b.op("Unsqueeze", [b.op("Gather", [node.input[i], positions], axis=0), b.ints(axes)]) for i in (7, 8)]
    return tables[0], tables[1]


def _gqa_checks(node: onnx.NodeProto, ranks: dict, dims: dict) -> str:
    """Why this GroupQueryAttention cannot be decomposed ("" when it can)."""
    query, key, value = _input(node, 0), _input(node, 1), _input(node, 2)
    if not (key and value):
        return "packed QKV is not decomposed yet"
    if not _input(node, 5):
        return "seqlens_k is missing"
    if any(_input(node, i) for i in (10, 11)):
        return "attention_bias or head_sink is not decomposed yet"
    if attribute(node, "do_rotary", 0) and not (_input(node, 7) and _input(node, 8)):
        return "do_rotary without cos_cache and sin_cache"
    set_attrs = [a for a in GQA_UNSUPPORTED if attribute(node, a, 0) not in (0, -1)]
    if set_attrs or attribute(node, "softcap", 0.0):
        return f"{', '.join(set_attrs) or 'softcap'} is not decomposed yet"
    if ranks.get(query) != 3 or not all(isinstance((dims.get(t) or [None] * 3)[2], int) for t in (query, key)):
        return "the hidden sizes of query and key are unknown"
    return ""


def group_query_attention_body(node: onnx.NodeProto, known: KnownTypes):
    """com.microsoft GroupQueryAttention: kv heads repeated for their query group, rotary embeddings
    (halves or interleaved, full or partial), a KV cache appended to the past, causal from the past
    length on, keys beyond seqlens_k masked. The past buffer is taken as full (seqlens_k = past +
    new - 1, as onnxruntime requires of batches over one token); where a row breaks that, its output
    is NaN rather than a quietly different number. (body, "") or (None, why)."""
    ranks, dims = known.ranks, known.dims
    reason = _gqa_checks(node, ranks, dims) or _heads_reason(node, {"query": dims[node.input[0]][2]})
    if reason:
        return None, reason
    query, key, value = node.input[0], node.input[1], node.input[2]
    heads, kv_heads = attribute(node, "num_heads"), attribute(node, "kv_num_heads")
    hidden_q = dims[query][2]
    head = hidden_q // heads
    b = Body(node.name or "gqa", known.elem_type(query))
    q, k, v = _heads(b, query, heads, head), _heads(b, key, kv_heads, head), _heads(b, value, kv_heads, head)
    past_key, past_value = _input(node, 3), _input(node, 4)
    past_length = b.op("Gather", [b.op("Shape", [past_key]), b.ints([2])], axis=0) if past_key else b.ints([0])
    if attribute(node, "do_rotary", 0):
        rotary = 2 * (dims.get(node.input[7]) or [None, head // 2])[1]
        new_length = b.op("Gather", [b.op("Shape", [q]), b.ints([2])], axis=0)
        start = b.op("Squeeze", [past_length])
        cos, sin = _rotary_tables(b, node, start, b.op("Squeeze", [new_length]))
        interleaved = bool(attribute(node, "rotary_interleaved", 0))
        q, k = (_rotate(b, t, cos, sin, rotary, head, interleaved) for t in (q, k))
    k, v = _append_past(b, node, k, v, past_key, past_value)
    group = heads // kv_heads
    k, v = _repeat_heads(b, k, group, heads, head), _repeat_heads(b, v, group, heads, head)
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = b.op("Mul", [scores, b.scalar(attribute(node, "scale", 0.0) or head**-0.5)])
    i, j, total = _key_positions(b, scores)
    lengths = b.op("Reshape", [b.op("Cast", [node.input[5]], to=TensorProto.INT64), b.ints([-1, 1, 1, 1])])
    causal = b.op("Greater", [j, b.op("Add", [i, past_length])])
    scores = b.op("Where", [b.op("Or", [causal, b.op("Greater", [j, lengths])]), b.scalar(float("-inf")), scores])
    context = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
    if past_key:  # a past buffer not full for some row: NaN there, not a quietly different number
        full = b.op("Equal", [lengths, b.op("Sub", [total, b.ints([1])])])
        context = b.op("Where", [full, context, b.scalar(float("nan"))])
    _merge_heads(b, context, hidden_q, node.output[0])
    return b, ""


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
DECOMPOSERS = {
    "Attention": attention_body,
    "QAttention": quantized_attention_body,
    "QLinearSoftmax": qlinear_softmax_body,
    "BiasSoftmax": bias_softmax_body,
    "MultiHeadAttention": multi_head_attention_body,
    "GroupQueryAttention": group_query_attention_body,
}
