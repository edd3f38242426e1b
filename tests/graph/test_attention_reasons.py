"""Why each onnxruntime attention form that is not decomposed is left alone: the reason the report
shows, one case per check, on hand-built nodes (the checks read only names, attributes and shapes)."""

import pytest
from onnx import TensorProto, helper

from sit_onnx.graph.ort_attention import KnownTypes, attention_body, multi_head_attention_body
from sit_onnx.graph.ort_gqa import _gqa_checks, group_query_attention_body


def _known(shapes: dict) -> KnownTypes:
    return KnownTypes.of({n: helper.make_tensor_type_proto(TensorProto.FLOAT, s) for n, s in shapes.items()})


def _node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), domain="com.microsoft", **attrs)


QKV = {"q": [1, 3, 32], "k": [1, 3, 16], "v": [1, 3, 16]}
GQA_INPUTS = ["q", "k", "v", "", "", "seqlens", "total"]


PACKED_INPUTS = ["q", "", "", "", "", "seqlens", "total"]
PACKED_QKV = {"q": [1, 3, 64]}  # 2 query heads and 1 kv head of 16 in one tensor


@pytest.mark.parametrize(
    "inputs, attrs, shapes, reason",
    [
        (["q", "k", ""], {}, QKV, "key without value, or value without key (packed QKV omits both)"),
        (["q", "", "v"], {}, QKV, "key without value, or value without key (packed QKV omits both)"),
        (GQA_INPUTS, {"qk_output": 1}, QKV, "qk_output=1 is not decomposed yet"),
        (["q", "k", "v", "", "", "seqlens", "total"], {}, QKV, ""),
        (GQA_INPUTS, {"sliding_window_cache": 1, "local_window_size": 4}, QKV,
         "sliding_window_cache=1 without past_key and past_value"),
        (["q", "k", "v", "pk", "", "seqlens", "total"], {"sliding_window_cache": 1, "local_window_size": 4}, QKV,
         "sliding_window_cache=1 without past_key and past_value"),
        (["q", "k", "v", "", "pv", "seqlens", "total"], {"sliding_window_cache": 1, "local_window_size": 4}, QKV,
         "sliding_window_cache=1 without past_key and past_value"),
        (["q", "k", "v", "pk", "pv", "seqlens", "total"], {"sliding_window_cache": 1, "local_window_size": 1}, QKV, ""),
        (["q", "k", "v", "pk", "pv", "seqlens", "total"], {"sliding_window_cache": 1}, QKV,
         "sliding_window_cache=1 without a local_window_size"),
        (["q", "k", "v", "pk", "pv", "seqlens", "total"], {"sliding_window_cache": 2, "local_window_size": 4}, QKV,
         "sliding_window_cache=2 is neither 0 nor 1"),
        (["q", "k", "v", "pk", "pv", "seqlens", "total", "", "", "", "bias"],
         {"sliding_window_cache": 1, "local_window_size": 4}, QKV,
         "attention_bias with sliding_window_cache=1 is not decomposed yet"),
        (["q", "k", "v", "pk", "pv", "seqlens", "total"], {"sliding_window_cache": 1, "local_window_size": 4}, QKV, ""),
        (GQA_INPUTS, {"kv_cache_bit_width": 8}, QKV, "kv_cache_bit_width=8 is not decomposed yet"),
        (GQA_INPUTS, {"k_quant_type": "PER_TENSOR"}, QKV, "k_quant_type=PER_TENSOR is not decomposed yet"),
        (GQA_INPUTS, {"v_quant_type": "NONE", "k_quant_type": "NONE", "sliding_window_cache": 0}, QKV, ""),
        (GQA_INPUTS, {"future_knob": 1}, QKV,
         "attribute future_knob is not one sit-onnx knows; left as it is rather than dropped"),
        # bytes that are no text: read only where the value is compared (it was decoded first, always:
        # a UnicodeDecodeError, found by fuzzing attribute types)
        (GQA_INPUTS, {"future_knob": b"\xff\xfe"}, QKV,
         "attribute future_knob is not one sit-onnx knows; left as it is rather than dropped"),
        (GQA_INPUTS, {"k_quant_type": b"\xffNONE"}, QKV, "k_quant_type=\ufffdNONE is not decomposed yet"),
        (GQA_INPUTS, {"causal": 2}, QKV, "causal=2 is neither 0 nor 1"),
        (GQA_INPUTS, {"causal": 0, "local_window_size": 4}, QKV,
         "local_window_size with causal=0 (onnxruntime refuses the pair)"),
        (GQA_INPUTS, {"causal": 0, "local_window_size": -1, "qk_norm_epsilon": 1e-6}, QKV, ""),
        (GQA_INPUTS, {"causal": 0}, QKV, ""),  # no window given: onnxruntime's default, -1, is none
        (GQA_INPUTS + ["", "", "", "", "", "k_scale"], {}, QKV, "k_scale is not decomposed yet"),
        (GQA_INPUTS + ["", "", "", "", "", "", "", "qn", "kn"], {}, QKV,
         "q_norm_weight, k_norm_weight are not decomposed yet"),
        (GQA_INPUTS + ["", "", "", "", "", "", "", "", "", "qs"], {}, QKV, "query_seqlens is not decomposed yet"),
        (GQA_INPUTS + ["cos"], {"do_rotary": 1}, QKV, "do_rotary without cos_cache and sin_cache"),
        (GQA_INPUTS + ["", "sin"], {"do_rotary": 1}, QKV, "do_rotary without cos_cache and sin_cache"),
        (GQA_INPUTS, {"local_window_size": 0}, QKV, "local_window_size 0 leaves no key to attend to"),
        (GQA_INPUTS, {"local_window_size": -2}, QKV, "local_window_size -2 leaves no key to attend to"),
        (GQA_INPUTS, {}, {**QKV, "q": [1, 3, None]}, "the hidden sizes of query and key are unknown"),
        (GQA_INPUTS, {}, {**QKV, "k": [1, 3, None]}, "the hidden sizes of query and key are unknown"),
        (GQA_INPUTS, {}, {**QKV, "q": [1, 3, 2, 16]}, "the hidden sizes of query and key are unknown"),
        (PACKED_INPUTS, {}, {"q": [1, 3, None]}, "the hidden sizes of query and key are unknown"),
        (GQA_INPUTS, {"local_window_size": -1, "smooth_softmax": 0}, QKV, ""),  # the defaults are fine
        (GQA_INPUTS, {"local_window_size": 4, "smooth_softmax": 1, "softcap": 30.0}, QKV, ""),
        (GQA_INPUTS + ["cos", "sin"], {"do_rotary": 1}, QKV, ""),
        (GQA_INPUTS + ["", "", "", "bias", "sink"], {}, QKV, ""),
        (PACKED_INPUTS, {}, PACKED_QKV, ""),
    ],
)  # fmt: skip
def test_group_query_attention_checks(inputs, attrs, shapes, reason):
    known = _known(shapes)
    node = _node("GroupQueryAttention", inputs, num_heads=2, kv_num_heads=1, **attrs)
    assert _gqa_checks(node, known.ranks, known.dims) == reason


@pytest.mark.parametrize(
    "inputs, missing",
    [
        (["q", "k", "v", "", "", "", "total"], "seqlens_k (input 5)"),
        (["q", "k", "v", "", "", "seqlens"], "total_sequence_length (input 6)"),
        (["q", "k", "v", "", "", "seqlens", ""], "total_sequence_length (input 6)"),
        (["q", "", "", "", "", "seqlens", "total"], None),  # packed QKV
    ],
)
def test_group_query_attention_required_inputs(inputs, missing):
    from sit_onnx.graph.attention import missing_required_input

    assert missing_required_input(_node("GroupQueryAttention", inputs, num_heads=2, kv_num_heads=1)) == missing


MHA = {"q": [1, 3, 32], "k": [1, 5, 32], "v": [1, 5, 16]}
NO_LAYOUT = "query, key and value of ranks {} (0: absent) are no layout MultiHeadAttention defines"


@pytest.mark.parametrize(
    "inputs, outputs, shapes, reason",
    [
        (["q"], ["y"], MHA, NO_LAYOUT.format((3, 0, 0))),
        (["q", "k", ""], ["y"], MHA, NO_LAYOUT.format((3, 3, 0))),
        (["q", "", "v"], ["y"], MHA, NO_LAYOUT.format((3, 0, 3))),
        (["q", "k", "v"], ["y"], {**MHA, "q": [1, 3, 2, 16]}, NO_LAYOUT.format((4, 3, 3))),
        (["q", "k", "v"], ["y"], {**MHA, "k": [1, 2, 5, 16]}, NO_LAYOUT.format((3, 4, 3))),
        (["q", "k", "v"], ["y"], {**MHA, "v": [1, 2, 5, 8]}, NO_LAYOUT.format((3, 3, 4))),
        (["q", "k", "v"], ["y"], {**MHA, "k": [1, 2, 5, 16], "v": [1, 2, 5, 8]}, ""),
        (["q", "k"], ["y"], {**MHA, "k": [1, 5, 2, 2, 16]}, ""),
        (["q"], ["y"], {"q": [1, 3, 2, 3, 16]}, ""),
        (["q", "k", "v"], ["y"], {**MHA, "q": [1, 3, None, 16]}, NO_LAYOUT.format((4, 3, 3))),
        (["q", "k", "v", "", "", "", "", "", "past_len"], ["y"], MHA, ""),  # no past: nothing to share
        (["q", "k", "v", "", "", "", "", "", "", "cache"], ["y"], MHA,
         "cache_indirection without past_sequence_length is no form onnxruntime defines"),
        (["q", "k", "v"], ["y"], {**MHA, "q": [1, 3, 31]}, "the query size 31 is not a multiple of num_heads 2"),
        (["q", "k", "v"], ["y"], {**MHA, "v": [1, 5, 15]}, "the value size 15 is not a multiple of num_heads 2"),
        (["q", "k", "v"], ["y", "", "", "qk"], MHA, "the qk output is not decomposed yet"),
        (["q", "k", "v"], ["y"], {**MHA, "q": [1, 3, None]}, "the hidden size of query or value is unknown"),
        (["q", "k", "v"], ["y"], {**MHA, "v": [1, 5, None]}, "the hidden size of query or value is unknown"),
        (["q", "k", "v", "", "mask"], ["y"], {**MHA, "mask": [1, 1, 3, 5]},
         "a 4-D key_padding_mask is not decomposed yet"),
    ],
)  # fmt: skip
def test_multi_head_attention_checks(inputs, outputs, shapes, reason):
    body, why = multi_head_attention_body(_node("MultiHeadAttention", inputs, outputs, num_heads=2), _known(shapes))
    assert why == reason and (body is None) == bool(reason)


@pytest.mark.parametrize("mask_shape", [None, [1], [1, 5], [1, 3, 5]])
def test_multi_head_attention_decomposes_its_supported_masks(mask_shape):
    shapes, inputs = dict(MHA), ["q", "k", "v"]
    if mask_shape:
        shapes["mask"], inputs = mask_shape, ["q", "k", "v", "", "mask"]
    body, why = multi_head_attention_body(_node("MultiHeadAttention", inputs, num_heads=2), _known(shapes))
    assert body is not None and why == ""


def test_unknown_input_types_are_named():
    from sit_onnx.graph.attention import _body

    node = _node("MultiHeadAttention", ["q", "k", "", "v"], num_heads=2)
    body, why = _body(node, 17, _known({"q": [1, 3, 32]}))
    assert body is None and why == "the types of k, v are unknown (shape inference could not tell)"


@pytest.mark.parametrize("op, inputs", [("Attention", ["", "w", "b"]), ("MultiHeadAttention", ["", "k", "v"]),
                                        ("GroupQueryAttention", [])])  # fmt: skip
def test_a_missing_first_input_is_named_not_an_internal_error(op, inputs):
    """Found by fuzzing: the other inputs typed, the empty query's type was looked up by its name ''."""
    from sit_onnx.graph.attention import _body

    node = _node(op, inputs, num_heads=2)
    body, why = _body(
        node, {"": 17, "com.microsoft": 1}, _known({"w": [32, 96], "b": [96], "k": [1, 3, 32], "v": [1, 3, 32]})
    )
    assert body is None and why == "its first input (the query, or the packed input) is missing"


PACKED_SHAPES = {"x": [1, 3, 32], "w": [32, 96]}


@pytest.mark.parametrize(
    "inputs, attrs, shapes, reason",
    [
        (["x", "w", "", "", "", "", "past_len"], {}, PACKED_SHAPES, "past_sequence_length is not decomposed yet"),
        (["x", "w"], {"past_present_share_buffer": 1}, PACKED_SHAPES,
         "past_present_share_buffer is not decomposed yet"),
        (["x", "w"], {"do_rotary": 1, "past_present_share_buffer": 1}, PACKED_SHAPES,
         "do_rotary, past_present_share_buffer is not decomposed yet"),
        (["x", "w"], {}, {"x": [1, 3, 32]}, "the packed QKV weights' shape is unknown"),
        (["x", "w"], {}, {**PACKED_SHAPES, "w": [32, None]}, "the packed QKV weights' shape is unknown"),
        (["x", "w"], {"qkv_hidden_sizes": [32, 30, 32]}, PACKED_SHAPES,
         "the key size 30 is not a multiple of num_heads 4"),
        (["x", "w"], {"qkv_hidden_sizes": [30, 32, 32]}, PACKED_SHAPES,
         "the query size 30 is not a multiple of num_heads 4"),
    ],
)  # fmt: skip
def test_packed_attention_checks(inputs, attrs, shapes, reason):
    body, why = attention_body(_node("Attention", inputs, num_heads=4, **attrs), _known(shapes))
    assert body is None and why == reason


@pytest.mark.parametrize(
    "inputs, heads, kv_heads, shapes, reason",
    [
        (GQA_INPUTS, 3, 1, {**QKV, "k": [1, 3, 8], "v": [1, 3, 8]},
         "the query size 32 is not a multiple of num_heads 3"),
        (PACKED_INPUTS, 2, 1, {"q": [1, 3, 62]},
         "the packed QKV size 62 is not a multiple of num_heads + 2 * kv_num_heads (4)"),
        (PACKED_INPUTS, 3, 2, {"q": [1, 3, 70]}, "num_heads 3 is not a multiple of kv_num_heads 2"),
        (PACKED_INPUTS, 3, 1, {"q": [1, 3, 25]}, ""),  # 5 heads of 5: 25 need not be a multiple of num_heads
        (PACKED_INPUTS, 0, 1, {"q": [1, 3, 64]},
         "num_heads is 0; it must be a positive number of heads"),
    ],
)  # fmt: skip
def test_group_query_attention_names_the_sizes_it_cannot_split(inputs, heads, kv_heads, shapes, reason):
    node = _node("GroupQueryAttention", inputs, num_heads=heads, kv_num_heads=kv_heads)
    body, why = group_query_attention_body(node, _known(shapes))
    assert why == reason and (body is None) == bool(reason)


def test_group_query_attention_names_the_query_size_it_cannot_split():
    """kv_num_heads 1 divides any head count; the query's 32 is no multiple of 3 (the key's 16 is not either)."""
    node = _node("GroupQueryAttention", GQA_INPUTS, num_heads=3, kv_num_heads=1)
    body, why = group_query_attention_body(node, _known({**QKV, "k": [1, 3, 8], "v": [1, 3, 8]}))
    assert body is None and why == "the query size 32 is not a multiple of num_heads 3"


@pytest.mark.parametrize(
    "op, inputs, shapes",
    [
        ("Attention", ["x", "w"], PACKED_SHAPES),
        ("QAttention", ["x", "w", "b", "s", "s"], PACKED_SHAPES),
        ("MultiHeadAttention", ["q", "k", "v"], MHA),
        ("QLinearSoftmax", ["x", "s", "z", "s", "z"], {"x": [1, 4]}),
        ("BiasSoftmax", ["x", "b"], {"x": [1, 4], "b": [1, 4]}),
    ],
)
def test_an_attribute_sit_onnx_does_not_know_leaves_the_op_alone(op, inputs, shapes):
    """An attribute a later onnxruntime adds may change what the op computes: the op is left as it
    is, saying which, rather than decomposed with the attribute dropped; without it, it decomposes."""
    from sit_onnx.graph.attention import _ort_body

    known = _known({**shapes, "s": [], "z": [], "b": shapes.get("b", [96])})
    heads = {} if op in ("QLinearSoftmax", "BiasSoftmax") else {"num_heads": 4}
    plain = _node(op, inputs, **heads)
    assert _ort_body(plain, {"": 17}, known)[1] == ""
    strange = _node(op, inputs, **heads, new_knob=1)
    assert _ort_body(strange, {"": 17}, known) == (
        None,
        "attribute new_knob is not one sit-onnx knows; left as it is rather than dropped",
    )


def test_group_query_attention_with_its_qk_output_is_left_alone():
    node = _node("GroupQueryAttention", GQA_INPUTS, ("y", "", "", "qk"), num_heads=2, kv_num_heads=1)
    known = _known(QKV)
    assert _gqa_checks(node, known.ranks, known.dims) == "the qk output is not decomposed yet"
