"""onnxruntime's MultiHeadAttention in its other input layouts: key and value already in heads
([B, N, L, H], as a decoder's cached cross-attention passes them), and packed QKV ([B, S, N, 3, H])
or packed KV ([B, L, N, 2, H], as the optimizer packs Stable Diffusion's attention). The first runs
on onnxruntime's CPU: the expansion equals it. The packed layouts run on CUDA only: the expansion
of a packed node equals the CPU kernel on the same numbers unpacked."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from tests.graph.test_attention import _ms_model, _ort

B, S, L, N, H, P = 2, 4, 6, 4, 8, 3
F32 = TensorProto.FLOAT
ABSENT = ("", F32, None, None)
MHA = "com.microsoft::MultiHeadAttention"


def _random(rng, *shape, scale=1.0):
    return rng.normal(0, scale, shape).astype(np.float32)


def _optional(rng, bias, mask, past, keys=L):
    """bias, key_padding_mask, attention_bias (absent), past key and value: trailing absent ones dropped."""
    total = keys + (P if past else 0)
    inputs = [
        ("bias", F32, [3 * N * H], _random(rng, 3 * N * H, scale=0.5)) if bias else ABSENT,
        ("kpm", TensorProto.INT32, [B], np.array([total - 2, total], np.int32)) if mask else ABSENT,
        ABSENT,
    ]
    if past:
        inputs += [(name, F32, [B, N, P, H], _random(rng, B, N, P, H)) for name in ("pk", "pv")]
    while inputs and not inputs[-1][0]:
        inputs.pop()
    return inputs


def _outputs(past):
    return ("y", "present_key", "present_value") if past else ("y",)


def _expanded(model):
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.op, a.expanded, a.reason) for a in found] == [(MHA, True, None)]
    return expanded


LAYOUT_CASES = {
    "plain": {},
    "bias": {"bias": True},
    "mask": {"mask": True},
    "past": {"past": True},
    "unidirectional": {"unidirectional": 1},
    "everything": {"bias": True, "mask": True, "past": True, "unidirectional": 1, "scale": 0.2},
}


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_key_and_value_in_heads_equal_onnxruntimes_kernel(case):
    """The bias is added to the query only: key and value in heads are taken as projected. With
    unidirectional, the keys are the new tokens (as many as the queries) after the past."""
    options = dict(LAYOUT_CASES[case])
    flags = {name: options.pop(name, False) for name in ("bias", "mask", "past")}
    keys = S if options.get("unidirectional") else L
    rng = np.random.default_rng(len(case))
    inputs = [
        ("q", F32, [B, S, N * H], _random(rng, B, S, N * H)),
        ("k", F32, [B, N, keys, H], _random(rng, B, N, keys, H)),
        ("v", F32, [B, N, keys, H], _random(rng, B, N, keys, H)),
        *_optional(rng, **flags, keys=keys),
    ]
    model, feeds = _ms_model("MultiHeadAttention", inputs, _outputs(flags["past"]), **options)
    for name, want, got in zip(_outputs(flags["past"]), _ort(model, feeds), _ort(_expanded(model), feeds)):
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("past", [False, True], ids=["no past", "past"])
@pytest.mark.parametrize("key_shape", [[B, N, L, H], [B, L, N * H]], ids=["in heads", "separate"])
def test_causal_cross_attention_is_left_alone_with_why(key_shape, past):
    """onnxruntime's CPU kernel masks unidirectional cross-attention (6 new keys, 4 queries, a past
    or not) in a pattern no causal rule gives; the node stays as it is, saying so."""
    rng = np.random.default_rng(9)
    inputs = [("q", F32, [B, S, N * H], _random(rng, B, S, N * H))]
    inputs += [(name, F32, key_shape, _random(rng, *key_shape)) for name in ("k", "v")]
    inputs += _optional(rng, bias=False, mask=False, past=past)
    model, _ = _ms_model("MultiHeadAttention", inputs, _outputs(past), unidirectional=1)
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [
        (False, f"unidirectional over {L} new keys for {S} queries (cross-attention) is not decomposed")
    ]


def _packed_and_unpacked(rng, layout, bias, mask, past):
    """A packed-layout model and the separate-layout model that means the same, with feeds for each."""
    q, k, v = _random(rng, B, S, N, H), _random(rng, B, L if layout == "packed kv" else S, N, H), None
    v = _random(rng, *k.shape)
    optional = _optional(rng, bias, mask, past)
    if layout == "packed qkv":
        packed = [("qkv", F32, [B, S, N, 3, H], np.stack([q, k, v], axis=3)), ABSENT, ABSENT]
    else:
        packed = [
            ("q", F32, [B, S, N * H], q.reshape(B, S, -1)),
            ("kv", F32, [B, L, N, 2, H], np.stack([k, v], axis=3)),
            ABSENT,
        ]
    separate = [(name, F32, [B, x.shape[1], N * H], x.reshape(B, x.shape[1], -1)) for name, x in zip("qkv", (q, k, v))]
    return [_ms_model("MultiHeadAttention", [*inputs, *optional], _outputs(past)) for inputs in (packed, separate)]


@pytest.mark.parametrize("layout", ["packed qkv", "packed kv"])
@pytest.mark.parametrize("flags", [{}, {"bias": True}, {"mask": True, "past": True}, {"bias": True, "past": True}])
def test_packed_layouts_equal_the_kernel_on_the_numbers_unpacked(layout, flags):
    flags = {"bias": False, "mask": False, "past": False, **flags}
    (packed, packed_feeds), (separate, feeds) = _packed_and_unpacked(np.random.default_rng(7), layout, **flags)
    for name, want, got in zip(_outputs(flags["past"]), _ort(separate, feeds), _ort(_expanded(packed), packed_feeds)):
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)


def test_a_packed_attention_converts_and_stays_close():
    (packed, feeds), _ = _packed_and_unpacked(np.random.default_rng(8), "packed qkv", bias=True, mask=False, past=False)
    new, report = rewrite_model(packed, RewriteOptions())
    assert len(report.converted) == 1 and report.attention[0]["expanded"]
    want, got = _ort(_expanded(packed), feeds)[0], _ort(new, feeds)[0]
    assert float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got)) > 0.999


@pytest.mark.parametrize(
    "shapes, reason",
    [
        ({"q": [B, S, N * H], "k": [B, N, L], "v": [B, N, L, H]},
         "query, key and value of ranks (3, 3, 4) (0: absent) are no layout MultiHeadAttention defines"),
        ({"q": [B, S, N, 3, H], "k": [B, L, N * H], "v": [B, L, N * H]},
         "query, key and value of ranks (5, 3, 3) (0: absent) are no layout MultiHeadAttention defines"),
        ({"q": [B, S, N * H], "k": [B, 2, L, H], "v": [B, N, L, H]},
         "key or value in heads hold 2 heads, not num_heads 4"),
        ({"q": [B, S, 2, 3, H]}, "key or value in heads hold 2 heads, not num_heads 4"),
        ({"q": [B, S, N * H], "k": [B, N, L, H], "v": [B, 2, L, H]},
         "key or value in heads hold 2 heads, not num_heads 4"),
        ({"q": [B, S, N * H], "k": [B, L, 8, 2, H]}, "key or value in heads hold 8 heads, not num_heads 4"),
        ({"q": [B, S, N, 3, None]}, "the hidden size of query or value is unknown"),
        ({"q": [B, S, N * H], "k": [B, L, N, 2, None]}, "the hidden size of query or value is unknown"),
        ({"q": [B, S, N * H], "k": [B, N, L, H], "v": [B, N, L, None]}, "the hidden size of query or value is unknown"),
        ({"q": [B, S, N, 3, H], "k": None},
         "the ranks of query, key and value are unknown (shape inference could not tell)"),
    ],
)  # fmt: skip
def test_layouts_it_cannot_read_say_why(shapes, reason):
    from sit_onnx.graph.ort_attention import KnownTypes, multi_head_attention_body

    names = list(shapes)
    types = {n: onnx.helper.make_tensor_type_proto(F32, s) for n, s in shapes.items() if s is not None}
    types.update({n: onnx.helper.make_tensor_type_proto(F32, None) for n, s in shapes.items() if s is None})
    node = onnx.helper.make_node("MultiHeadAttention", names, ["y"], domain="com.microsoft", num_heads=N)
    body, why = multi_head_attention_body(node, KnownTypes.of(types))
    assert body is None and why == reason
