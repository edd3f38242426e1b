"""onnxruntime's `com.microsoft` GroupQueryAttention decomposed into standard ops, so that its softmax
becomes an ordinary site. It is what onnxruntime's transformer optimizer and onnxruntime-genai's
model builder write for decoders (Llama, Mistral, Phi, Qwen, Gemma): Q, K, V separate or packed in
one tensor, kv heads shared by groups of query heads, a KV cache, rotary embeddings, a sliding
window, softcapping, a sink logit.

The body follows onnxruntime's CPU kernel, row by row of the batch:
- total_b = seqlens_k[b] + 1 keys are valid; the past holds past_b of them: 0 on the first prompt
  (the new length S equals total_sequence_length), else total_b - S. So a past buffer longer than
  the valid past (genai's shared buffer, of the maximum length) reads right, row by row;
- present = the past's first past_b keys, the S new ones, zeros up to max(buffer, total) length;
- new token i sits at past_b + i: its rotary position (unless position_ids say otherwise), and it
  sees keys j <= past_b + i with j < total_b, within the last `local_window_size` when set;
- scores = Q·Kᵀ·scale, softcap·tanh(scores/softcap), + attention_bias, masked keys at the type's
  lowest (not -inf: a row with no key left stays finite and cannot poison a later MatMul), softmax,
  with a sink logit (head_sink per head, or 0 for smooth_softmax) taking its share of the sum; a
  padded row of the first prompt whose window holds no valid key gives 0, as onnxruntime does.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from sit_onnx.graph.ort_attention import (
    Body,
    KnownTypes,
    heads_reason,
    key_positions,
    merge_heads,
    optional_input,
    optional_output,
    to_heads,
    unknown_attribute_reason,
)
from sit_onnx.graph.walk import attribute

LOWEST = {TensorProto.FLOAT16: -65504.0}  # a masked score; other float types take -1e30
SEQLENS_K, TOTAL_LENGTH, COS_CACHE, SIN_CACHE, POSITION_IDS, ATTENTION_BIAS, HEAD_SINK = 5, 6, 7, 8, 9, 10, 11
UNREAD_INPUTS = {12: "k_scale", 13: "v_scale", 14: "q_norm_weight", 15: "k_norm_weight", 16: "query_seqlens"}
READ_ATTRIBUTES = {  # what the body reads; an epsilon matters only with the norm weights, refused above
    "num_heads", "kv_num_heads", "scale", "softcap", "do_rotary", "rotary_interleaved", "local_window_size",
    "smooth_softmax", "causal", "q_norm_epsilon", "k_norm_epsilon", "qk_norm_epsilon", "sliding_window_cache",
}  # fmt: skip
UNREAD_DEFAULTS = {  # attributes the body does not implement, fine at these values (onnxruntime's defaults)
    "qk_output": 0, "kv_cache_bit_width": 0, "k_quant_type": "NONE", "v_quant_type": "NONE",
}  # fmt: skip


def _attribute_reason(node: onnx.NodeProto) -> str:
    """Why an attribute keeps the node from being decomposed: one the body does not implement set
    away from its default, or one this module does not know (a later onnxruntime's), whose meaning
    a decomposition would otherwise silently drop."""
    for found in node.attribute:
        if found.name not in UNREAD_DEFAULTS:  # an unknown one, binary strings too, is named below
            continue
        value = onnx.helper.get_attribute_value(found)
        value = value.decode(errors="replace") if isinstance(value, bytes) else value
        if value != UNREAD_DEFAULTS[found.name]:
            return f"{found.name}={value} is not decomposed yet"
    unknown = unknown_attribute_reason(node, READ_ATTRIBUTES | set(UNREAD_DEFAULTS))
    if unknown:
        return unknown
    if attribute(node, "causal", 1) not in (0, 1):
        return f"causal={attribute(node, 'causal')} is neither 0 nor 1"
    if not attribute(node, "causal", 1) and attribute(node, "local_window_size", -1) != -1:
        return "local_window_size with causal=0 (onnxruntime refuses the pair)"
    return _ring_reason(node)


def _ring_reason(node: onnx.NodeProto) -> str:
    """Why a window-sized cache (sliding_window_cache=1) cannot be decomposed ("" when it can)."""
    ring = attribute(node, "sliding_window_cache", 0)
    if ring == 0:
        return ""
    if ring != 1:
        return f"sliding_window_cache={ring} is neither 0 nor 1"
    if attribute(node, "local_window_size", -1) < 1:
        return "sliding_window_cache=1 without a local_window_size"
    if not (optional_input(node, 3) and optional_input(node, 4)):
        return "sliding_window_cache=1 without past_key and past_value"
    if optional_input(node, ATTENTION_BIAS):
        return "attention_bias with sliding_window_cache=1 is not decomposed yet"
    return ""


def _gqa_checks(node: onnx.NodeProto, ranks: dict, dims: dict) -> str:
    """Why this GroupQueryAttention cannot be decomposed ("" when it can)."""
    query, key, value = optional_input(node, 0), optional_input(node, 1), optional_input(node, 2)
    if bool(key) != bool(value):
        return "key without value, or value without key (packed QKV omits both)"
    unread = [name for index, name in UNREAD_INPUTS.items() if optional_input(node, index)]
    if unread:
        return f"{', '.join(unread)} {'is' if len(unread) == 1 else 'are'} not decomposed yet"
    if optional_output(node, 3):
        return "the qk output is not decomposed yet"
    reason = _attribute_reason(node)
    if reason:
        return reason
    if attribute(node, "do_rotary", 0) and not (optional_input(node, COS_CACHE) and optional_input(node, SIN_CACHE)):
        return "do_rotary without cos_cache and sin_cache"
    window = attribute(node, "local_window_size", -1)
    if window == 0 or window < -1:
        return f"local_window_size {window} leaves no key to attend to"
    tensors = [query, key] if key else [query]
    if ranks.get(query) != 3 or not all(isinstance((dims.get(t) or [None] * 3)[2], int) for t in tensors):
        return "the hidden sizes of query and key are unknown"
    return ""


def _sizes_reason(node: onnx.NodeProto, dims: dict) -> str:
    """Why the head counts cannot split the query (packed: num_heads + 2·kv_num_heads heads of it)."""
    reason = heads_reason(node, {} if not optional_input(node, 1) else {"query": dims[node.input[0]][2]})
    if reason or optional_input(node, 1):
        return reason
    width = attribute(node, "num_heads") + 2 * attribute(node, "kv_num_heads")
    if dims[node.input[0]][2] % width:
        return (
            f"the packed QKV size {dims[node.input[0]][2]} is not a multiple of num_heads + 2 * kv_num_heads ({width})"
        )
    return ""


def _split_heads(b: Body, node: onnx.NodeProto, heads: int, kv_heads: int, head: int):
    """Q [B, heads, S, head] and K, V [B, kv_heads, S, head], from three inputs or one packed one
    (Q's heads, then K's, then V's, along the last dim)."""
    query, key, value = node.input[0], optional_input(node, 1), optional_input(node, 2)
    if not key:
        sizes = b.ints([heads * head, kv_heads * head, kv_heads * head])
        query, key, value = b.op("Split", [query, sizes], 3, axis=2)
    return to_heads(b, query, heads, head), to_heads(b, key, kv_heads, head), to_heads(b, value, kv_heads, head)


def _rows(b: Body, node: onnx.NodeProto, q: str) -> dict[str, str]:
    """Per batch row, as [B, 1, 1, 1] int64: `total` valid keys and `past` (0 on the first prompt);
    and, as [1]: `new` (S), `length` (total_sequence_length) and `first` (the first prompt: bool)."""
    new = b.op("Gather", [b.op("Shape", [q]), b.ints([2])], axis=0)
    seqlens = b.op("Cast", [node.input[SEQLENS_K]], to=TensorProto.INT64)
    total = b.op("Add", [b.op("Reshape", [seqlens, b.ints([-1, 1, 1, 1])]), b.ints([1])])
    length = b.op("Reshape", [b.op("Cast", [node.input[TOTAL_LENGTH]], to=TensorProto.INT64), b.ints([1])])
    first = b.op("Equal", [new, length])
    past = b.op("Where", [first, b.ints([0]), b.op("Sub", [total, new])])
    return {"total": total, "past": past, "new": new, "length": length, "first": first}


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


def _rotary(b: Body, node: onnx.NodeProto, q: str, k: str, rows: dict, rotary: int, head: int) -> tuple[str, str]:
    """Q and K rotated at their positions: past_b + i for new token i, or position_ids; on the first
    prompt the kernel reads position_ids[0, 0] + i for every row (its prompt path takes one start),
    and so does this body."""
    steps = b.op("Unsqueeze", [b.arange(rows["new"]), b.ints([0])])  # [1, S]
    if optional_input(node, POSITION_IDS):
        given = b.op("Cast", [node.input[POSITION_IDS]], to=TensorProto.INT64)
        start = b.op("Slice", [given, b.ints([0, 0]), b.ints([1, 1]), b.ints([0, 1])])  # [1, 1]
        positions = b.op("Where", [rows["first"], b.op("Add", [start, steps]), given])
    else:
        positions = b.op("Add", [b.op("Reshape", [rows["past"], b.ints([-1, 1])]), steps])
    cos, sin = (b.op("Unsqueeze", [b.op("Gather", [node.input[i], positions], axis=0), b.ints([1])]) for i in (7, 8))
    interleaved = bool(attribute(node, "rotary_interleaved", 0))
    return _rotate(b, q, cos, sin, rotary, head, interleaved), _rotate(b, k, cos, sin, rotary, head, interleaved)


def _present(b: Body, new: str, past: str | None, rows: dict, output: str | None) -> str:
    """The past's first past_b entries, then the new ones, then zeros, along axis 2 of a buffer of
    max(past buffer, total_sequence_length) entries (written to `output` where the node has it);
    returns its first total_sequence_length entries, the keys (or values) attention reads."""
    buffer = b.op("Gather", [b.op("Shape", [past]), b.ints([2])], axis=0) if past else b.ints([0])
    size = b.op("Max", [buffer, rows["length"]])
    j = _cache_rows(b, size)
    moved = _take_rows(b, new, b.op("Sub", [j, rows["past"]]), rows["new"], size)
    fresh = b.op(
        "And", [b.op("GreaterOrEqual", [j, rows["past"]]), b.op("Less", [j, b.op("Add", [rows["past"], rows["new"]])])]
    )
    present = b.op("Where", [fresh, moved, b.scalar(0.0)])
    if past:
        pads = b.op("Concat", [b.ints([0] * 6), b.op("Sub", [size, buffer]), b.ints([0])], axis=0)
        present = b.op("Where", [b.op("Less", [j, rows["past"]]), b.op("Pad", [past, pads]), present])
    if output:
        b.op("Identity", [present], [output])
    return b.op("Slice", [present, b.ints([0]), rows["length"], b.ints([2])])


def _cache_rows(b: Body, count: str) -> str:
    """Row indices 0 .. count - 1 along a cache's axis 2, as [1, 1, count, 1]."""
    return b.op("Reshape", [b.arange(count), b.ints([1, 1, -1, 1])])


def _take_rows(b: Body, x: str, index: str, available: str, count: str) -> str:
    """x's rows along axis 2 at `index` ([B, 1, count, 1], clipped into the `available` rows):
    [B, kv_heads, count, head]."""
    zero = b.op("Squeeze", [b.ints([0])])
    index = b.op("Clip", [index, zero, b.op("Squeeze", [b.op("Sub", [available, b.ints([1])])])])
    shape = b.op("Shape", [x])
    front, back = b.op("Slice", [shape, b.ints([0]), b.ints([2])]), b.op("Slice", [shape, b.ints([3]), b.ints([4])])
    target = b.op("Concat", [front, count, back], axis=0)
    return b.op("GatherElements", [x, b.op("Expand", [index, target])], axis=2)


def _cache_end(b: Body, length: str, capacity: str, gap: str) -> str:
    """Where a window-sized cache appends after `length` positions (onnxruntime's WindowedCacheEnd):
    the length while it fits, else lowered by whole `gap`s, the rows reclaimed at once."""
    blocks = b.op("Div", [b.op("Add", [b.op("Sub", [length, capacity]), b.op("Sub", [gap, b.ints([1])])]), gap])
    lowered = b.op("Sub", [length, b.op("Mul", [gap, blocks])])
    return b.op("Where", [b.op("Greater", [length, capacity]), lowered, length])


def _ring(b: Body, node: onnx.NodeProto, k: str, v: str, rows: dict) -> tuple[str, str, dict]:
    """sliding_window_cache=1: the past is a buffer of C >= W rows holding the latest `before`
    positions of each row (resident rows are reclaimed C - W + 1 at a time). Attention runs over
    those rows and the new ones; the present keeps the latest `after` of them, zeros after. Returns
    keys and values and the rows in cache coordinates (past = before, total = before + S), where the
    causal and window masks, which depend only on distances, hold as they are."""
    capacity = b.op("Gather", [b.op("Shape", [node.input[3]]), b.ints([2])], axis=0)
    gap = b.op("Sub", [capacity, b.ints([attribute(node, "local_window_size") - 1])])
    past = b.op("Max", [b.op("Sub", [rows["total"], rows["new"]]), b.ints([0])])  # as the kernel clamps it
    before = _cache_end(b, past, capacity, gap)
    after = _cache_end(b, b.op("Add", [past, rows["new"]]), capacity, gap)
    joined = {"past": before, "new": rows["new"], "length": b.op("Add", [capacity, rows["new"]])}
    keys, values = (_present(b, x, node.input[i], joined, None) for x, i in ((k, 3), (v, 4)))
    offset = b.op("Sub", [b.op("Add", [before, rows["new"]]), after])
    r = _cache_rows(b, capacity)
    for joined_rows, output in ((keys, optional_output(node, 1)), (values, optional_output(node, 2))):
        if output:
            kept = _take_rows(b, joined_rows, b.op("Add", [r, offset]), joined["length"], capacity)
            b.op("Where", [b.op("Less", [r, after]), kept, b.scalar(0.0)], [output])
    return keys, values, {"past": before, "total": b.op("Add", [before, rows["new"]])}


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


def _scores(b: Body, node: onnx.NodeProto, q: str, k: str, rows: dict, head: int) -> str:
    """Q·Kᵀ·scale, softcapped, plus attention_bias, each key a new token may not see at the lowest."""
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = b.op("Mul", [scores, b.scalar(attribute(node, "scale", 0.0) or head**-0.5)])
    softcap = attribute(node, "softcap", 0.0)
    if softcap > 0:
        scores = b.op("Mul", [b.op("Tanh", [b.op("Div", [scores, b.scalar(softcap)])]), b.scalar(softcap)])
    if optional_input(node, ATTENTION_BIAS):
        scores = b.op("Add", [scores, node.input[ATTENTION_BIAS]])
    i, j, _ = key_positions(b, scores)
    position = b.op("Add", [i, rows["past"]])  # [B, 1, S, 1]
    hidden = b.op("GreaterOrEqual", [j, rows["total"]])
    if attribute(node, "causal", 1):
        hidden = b.op("Or", [b.op("Greater", [j, position]), hidden])
    window = attribute(node, "local_window_size", -1)
    if window > 0:
        hidden = b.op("Or", [hidden, b.op("LessOrEqual", [j, b.op("Sub", [position, b.ints([window])])])])
    return b.op("Where", [hidden, b.scalar(LOWEST.get(b.elem_type, -1e30)), scores])


def _softmax(b: Body, node: onnx.NodeProto, scores: str) -> str:
    """Softmax over the keys; with a sink (head_sink[h], or 0 for smooth_softmax) as one more logit
    of each row, whose weight is then dropped."""
    sink = optional_input(node, HEAD_SINK)
    if not sink and attribute(node, "smooth_softmax", -1) != 1:  # its default is -1: only 1 turns it on
        return b.op("Softmax", [scores], axis=-1)
    column = b.op("Concat", [b.op("Slice", [b.op("Shape", [scores]), b.ints([0]), b.ints([3])]), b.ints([1])], axis=0)
    value = b.op("Reshape", [sink, b.ints([1, -1, 1, 1])]) if sink else b.scalar(0.0)
    probs = b.op("Softmax", [b.op("Concat", [scores, b.op("Expand", [value, column])], axis=-1)], axis=-1)
    return b.op("Slice", [probs, b.ints([0]), b.ints([-1]), b.ints([-1])])


def group_query_attention_body(node: onnx.NodeProto, known: KnownTypes):
    """com.microsoft GroupQueryAttention as onnxruntime's CPU kernel computes it (module docstring):
    (body, "") or (None, why)."""
    reason = _gqa_checks(node, known.ranks, known.dims) or _sizes_reason(node, known.dims)
    if reason:
        return None, reason
    heads, kv_heads = attribute(node, "num_heads"), attribute(node, "kv_num_heads")
    hidden = known.dims[node.input[0]][2]
    head = hidden // heads if optional_input(node, 1) else hidden // (heads + 2 * kv_heads)
    b = Body(node.name or "gqa", known.elem_type(node.input[0]))
    q, k, v = _split_heads(b, node, heads, kv_heads, head)
    rows = _rows(b, node, q)
    if attribute(node, "do_rotary", 0):
        rotary = 2 * (known.dims.get(node.input[COS_CACHE]) or [None, head // 2])[1]
        q, k = _rotary(b, node, q, k, rows, rotary, head)
    if attribute(node, "sliding_window_cache", 0):
        k, v, rows = _ring(b, node, k, v, rows)
    else:
        k = _present(b, k, optional_input(node, 3), rows, optional_output(node, 1))
        v = _present(b, v, optional_input(node, 4), rows, optional_output(node, 2))
    group = heads // kv_heads
    k, v = _repeat_heads(b, k, group, heads, head), _repeat_heads(b, v, group, heads, head)
    context = b.op("MatMul", [_softmax(b, node, _scores(b, node, q, k, rows, head)), v])
    window = attribute(node, "local_window_size", -1)
    if window > 0:  # a padded prompt row whose window holds no valid key: 0, as onnxruntime gives
        first = b.op("Add", [key_positions(b, context)[0], b.op("Sub", [rows["past"], b.ints([window - 1])])])
        context = b.op("Where", [b.op("GreaterOrEqual", [first, rows["total"]]), b.scalar(0.0), context])
    merge_heads(b, context, heads * head, node.output[0])
    return b, ""
