"""onnxruntime's GroupQueryAttention in every form its CPU kernel runs (packed QKV, a KV cache whose
valid length differs per row inside a longer buffer, as onnxruntime-genai shares past and present,
rotary embeddings, sliding windows, softcap, sink logits, attention bias, float16): the
decomposition equals the kernel on every output, and the converted softmax follows the neuron
reference on its own logits."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE

ABSENT = ("", 0, None, None)


def _tensor(rng, dtype, *shape):
    return rng.normal(0, 1, shape).astype(dtype)


def _qkv(rng, elem, dtype, batch, new, heads, kv_heads, size, packed):
    if packed:
        width = (heads + 2 * kv_heads) * size
        return [("q", elem, [batch, new, width], _tensor(rng, dtype, batch, new, width)), ABSENT, ABSENT]
    return [
        (name, elem, [batch, new, count * size], _tensor(rng, dtype, batch, new, count * size))
        for name, count in (("q", heads), ("k", kv_heads), ("v", kv_heads))
    ]


def _rotary_inputs(rotary, elem, dtype, positions=64):
    angles = np.arange(positions)[:, None] / 10000 ** (np.arange(0, rotary, 2) / rotary)[None, :]
    return [
        ("cos", elem, [positions, rotary // 2], np.cos(angles).astype(dtype)),
        ("sin", elem, [positions, rotary // 2], np.sin(angles).astype(dtype)),
    ]


def gqa_model(rng, batch=2, new=5, past=0, buffer=None, lengths=None, heads=4, kv_heads=2, size=8, **options):
    """A GroupQueryAttention model and its feeds. `lengths`: valid keys per row (default past + new);
    `buffer`: the past's length when longer than `past` (genai's shared buffer); options: packed,
    rotary (dims), interleaved, position_ids, bias, sink, dtype, and the op's attributes."""
    dtype = options.pop("dtype", np.float32)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    lengths = np.array(lengths if lengths is not None else [past + new] * batch)
    total = int(lengths.max())
    inputs = _qkv(rng, elem, dtype, batch, new, heads, kv_heads, size, options.pop("packed", False))
    cached = buffer or past
    if cached:
        shape = [batch, kv_heads, cached, size]
        inputs += [(name, elem, shape, _tensor(rng, dtype, *shape)) for name in ("past_key", "past_value")]
    else:
        inputs += [ABSENT, ABSENT]
    inputs += [
        ("seqlens_k", TensorProto.INT32, [batch], (lengths - 1).astype(np.int32)),
        ("total_sequence_length", TensorProto.INT32, [], np.array(total, np.int32)),
    ]
    attrs = dict(options)
    rotary = attrs.pop("rotary", None)
    shapeless = attrs.pop("shapeless_tables", False)  # cos/sin declared without a shape: the full head rotates
    if rotary:
        tables = _rotary_inputs(rotary, elem, dtype)
        inputs += [(n, t, None, v) for n, t, _, v in tables] if shapeless else tables
        attrs.update(do_rotary=1, rotary_interleaved=attrs.pop("interleaved", 0))
    else:
        inputs += [ABSENT, ABSENT]
    positions = (np.arange(new)[None] + lengths[:, None] - new + 3).astype(np.int64)  # shifted from the default
    inputs.append(
        ("position_ids", TensorProto.INT64, [batch, new], positions) if attrs.pop("position_ids", 0) else ABSENT
    )
    bias_shape = [batch, 1, new, total]
    inputs.append(
        ("attention_bias", elem, bias_shape, _tensor(rng, dtype, *bias_shape)) if attrs.pop("bias", 0) else ABSENT
    )
    inputs.append(("head_sink", elem, [heads], _tensor(rng, dtype, heads)) if attrs.pop("sink", 0) else ABSENT)
    while not inputs[-1][0]:
        inputs.pop()
    node = helper.make_node(
        "GroupQueryAttention", [i[0] for i in inputs], ["y", "present_key", "present_value"], name="gqa",
        domain="com.microsoft", num_heads=heads, kv_num_heads=kv_heads, **attrs,
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, t, s) for n, t, s, _ in inputs if n],
        [helper.make_tensor_value_info(o, elem, None) for o in node.output],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets), {n: v for n, _, _, v in inputs if n}


def _run(model, feeds, outputs=None):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(outputs, feeds)


CASES = {
    "prompt": {},
    "prompt, rows padded": {"lengths": [5, 3]},
    "packed prompt": {"packed": True},
    "packed decode": {"packed": True, "new": 1, "past": 6},
    "decode": {"new": 1, "past": 6},
    "decode, rows differ in a longer buffer": {"new": 1, "buffer": 10, "lengths": [7, 4]},
    "decode, full rows in a longer buffer": {"new": 1, "buffer": 10, "lengths": [7, 7]},
    "decode, buffer shorter than the total": {"new": 1, "buffer": 4, "lengths": [5, 3]},
    "prefill on a longer buffer": {"batch": 1, "new": 3, "buffer": 10, "lengths": [6]},
    "rotary, rows differ": {"new": 1, "buffer": 10, "lengths": [7, 4], "rotary": 16, "size": 16},
    "rotary position ids": {"new": 1, "past": 6, "rotary": 16, "size": 16, "position_ids": True},
    "rotary position ids, padded prompt (the kernel starts every row at the first id)": {
        "lengths": [5, 3], "rotary": 16, "size": 16, "position_ids": True},
    "packed rotary interleaved, partial": {"new": 1, "past": 6, "rotary": 16, "size": 32, "interleaved": 1,
                                           "packed": True},
    "mqa": {"kv_heads": 1, "new": 1, "past": 6},
    "window 1 prompt": {"local_window_size": 1},
    "window 3 prompt": {"local_window_size": 3},
    "window 3 decode": {"new": 1, "past": 6, "local_window_size": 3},
    "window wider than the keys": {"new": 1, "past": 6, "local_window_size": 50},
    "window, padded prompt rows": {"lengths": [5, 2], "local_window_size": 1},
    "window 2, padded prompt rows": {"lengths": [5, 2], "local_window_size": 2},
    "softcap": {"softcap": 2.0},
    "smooth softmax": {"smooth_softmax": 1},
    "head sink": {"sink": True},
    "head sink decode": {"sink": True, "new": 1, "past": 6},
    "attention bias": {"bias": True},
    "attention bias decode": {"bias": True, "new": 1, "past": 6},
    "scale": {"scale": 0.05, "new": 1, "past": 6},
    "softcap below 1": {"softcap": 0.5},
    "rotary tables without a shape": {"new": 1, "past": 6, "rotary": 16, "size": 16, "shapeless_tables": True},
    "everything": {"packed": True, "rotary": 16, "size": 16, "new": 1, "buffer": 10, "lengths": [7, 5],
                   "local_window_size": 3, "softcap": 3.0, "sink": True, "bias": True},
    "everything, float16": {"dtype": np.float16, "packed": True, "rotary": 16, "size": 16, "new": 1, "buffer": 10,
                            "lengths": [7, 5], "local_window_size": 3, "softcap": 3.0, "sink": True, "bias": True},
    "prompt, float16": {"dtype": np.float16, "lengths": [5, 4]},
    "not causal, prompt": {"causal": 0},
    "not causal, rows differ in a longer buffer": {"causal": 0, "new": 1, "buffer": 10, "lengths": [7, 4]},
    "smooth softmax -1 (its default: off)": {"smooth_softmax": -1},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_decomposition_equals_onnxruntimes_kernel(case):
    options = dict(CASES[case])
    model, feeds = gqa_model(np.random.default_rng(sorted(CASES).index(case)), **options)
    expected = _run(model, feeds)
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.op, a.expanded, a.reason) for a in found] == [("com.microsoft::GroupQueryAttention", True, None)]
    assert not any(n.op_type == "GroupQueryAttention" for n in expanded.graph.node)
    tolerance = 2e-3 if options.get("dtype") == np.float16 else 1e-5
    for name, want, got in zip(("y", "present_key", "present_value"), expected, _run(expanded, feeds)):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=tolerance, err_msg=name)


@pytest.mark.parametrize("window", [1, 2])
def test_float16_window_with_padded_prompt_rows_equals_the_kernel_on_real_tokens(window):
    """Padded queries of a windowed float16 prompt: onnxruntime 1.32's CPU kernel gives them other
    values than in float32 (where a window holding no valid key gives 0; in float16 window 1 gives
    the last valid key's value): padding either way. The body gives the float32 kernel's (finite:
    the next layer multiplies a padded value by a weight of 0, and NaN would survive that), and
    equals the float16 kernel on every real token."""
    lengths = [5, 2]
    model, feeds = gqa_model(np.random.default_rng(window), dtype=np.float16, lengths=lengths, local_window_size=window)
    expected = _run(model, feeds)[0].astype(np.float32)
    expanded, _ = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    got = _run(expanded, feeds)[0].astype(np.float32)
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(got[row, :length], expected[row, :length], atol=2e-3)
    blind = lengths[1] + window - 1  # row 1's first query whose window holds no valid key
    assert np.isfinite(got).all() and np.array_equal(got[1, blind:], np.zeros_like(got[1, blind:]))


def _with_outputs(model, names):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    return model


@pytest.mark.parametrize("case", ["decode, rows differ in a longer buffer", "head sink decode", "everything"])
def test_converted_softmax_follows_the_reference_on_its_own_logits(case):
    model, feeds = gqa_model(np.random.default_rng(3), **CASES[case])
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1 and report.attention[0]["expanded"]
    site = report.sites[0]
    logits, got = _run(_with_outputs(new, [site.logits, site.output]), feeds)[-2:]
    reference = spiking_softmax(logits, shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got, reference, atol=1e-6)
    original, converted = _run(model, feeds)[0], _run(new, feeds)[0]
    cosine = float((original * converted).sum() / np.linalg.norm(original) / np.linalg.norm(converted))
    assert cosine > 0.999


def test_a_sink_is_one_more_logit_of_each_row():
    """With head_sink the converted softmax row holds the keys and the head's sink: its weight
    shares the sum (the keys' weights add up to less than 1) and is not an output."""
    model, feeds = gqa_model(np.random.default_rng(4), new=1, past=6, sink=True)
    new, report = rewrite_model(model, RewriteOptions())
    site = report.sites[0]
    logits, weights = _run(_with_outputs(new, [site.logits, site.output]), feeds)[-2:]
    assert logits.shape[-1] == 7 + 1  # 7 keys, then the sink
    np.testing.assert_allclose(logits[..., -1], np.broadcast_to(feeds["head_sink"][None, :, None], logits.shape[:-1]))
    assert np.all(weights[..., :-1].sum(-1) < 1 - 1e-3)


def test_a_genai_decode_loop_through_the_shared_buffer_layout():
    """onnxruntime-genai's layout: one buffer of the maximum length per layer, rows of different
    lengths in it; a prompt, then two tokens, each step's present fed back as the next past. The
    expansion's outputs equal the kernel's at every step."""
    rng = np.random.default_rng(5)
    prompt, feeds = gqa_model(rng, new=4, buffer=8, lengths=[4, 2], rotary=16, size=16)
    feeds["past_key"], feeds["past_value"] = np.zeros((2, 2, 8, 16), np.float32), np.zeros((2, 2, 8, 16), np.float32)
    step, step_feeds = gqa_model(rng, new=1, buffer=8, lengths=[5, 3], rotary=16, size=16)
    lengths = np.array([4, 2])
    for model in (prompt, step, step):
        expanded, _ = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
        want, got = _run(model, feeds), _run(expanded, feeds)
        for name, a, b in zip(("y", "present_key", "present_value"), want, got):
            np.testing.assert_allclose(b, a, atol=1e-5, err_msg=name)
        lengths = lengths + 1
        new = {name: _tensor(rng, np.float32, *step_feeds[name].shape) for name in ("q", "k", "v")}
        feeds = {**step_feeds, **new, "past_key": want[1], "past_value": want[2]}
        feeds.update(seqlens_k=(lengths - 1).astype(np.int32), total_sequence_length=np.array(lengths.max(), np.int32))


def _cache_end(length, capacity, window):
    """onnxruntime's WindowedCacheEnd, for the valid rows of a window-sized present."""
    gap = capacity - window + 1
    return length if length <= capacity else length - gap * ((length - capacity + gap - 1) // gap)


RING = {  # window, capacity, new tokens, lengths per row, first prompt
    "filling": (4, 6, 1, [3, 3], False),
    "just full": (4, 6, 1, [7, 7], False),
    "rows at different fills": (4, 6, 1, [9, 5], False),
    "compacted twice": (4, 6, 1, [12, 8], False),
    "capacity = window: every step compacts": (4, 4, 1, [9, 6], False),
    "three tokens on a full cache (staging)": (4, 6, 3, [9], False),
    "prompt shorter than the capacity": (4, 6, 5, [5], True),
    "prompt longer than the capacity": (4, 6, 8, [8], True),
    "slack above the window": (2, 8, 1, [20, 3], False),
    "a window of one": (1, 3, 1, [7, 4], False),
}  # (a padded prompt row onnxruntime refuses with this cache: "seqlens_k[1] = 2 is too small")


@pytest.mark.parametrize("case", sorted(RING))
@pytest.mark.parametrize("extras", [{}, {"packed": True, "rotary": 16, "size": 16, "softcap": 3.0, "sink": True}])
def test_a_window_sized_cache_equals_onnxruntimes_kernel(case, extras):
    """sliding_window_cache=1 (onnxruntime-genai's cache for window layers): each row's latest
    positions in a buffer of the window's size (plus slack), reclaimed a block at a time. The
    output, and the present's valid rows, equal the kernel's (the rows after them are unspecified:
    the kernel leaves what its staging buffer held; the expansion writes zeros)."""
    window, capacity, new, lengths, first = RING[case]
    model, feeds = gqa_model(
        np.random.default_rng(11), batch=len(lengths), new=new, buffer=capacity, lengths=lengths,
        local_window_size=window, sliding_window_cache=1, **extras,
    )  # fmt: skip
    if first:
        feeds["total_sequence_length"] = np.array(new, np.int32)
    expected = _run(model, feeds)
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert found[0].expanded, found[0].reason
    got = _run(expanded, feeds)
    np.testing.assert_allclose(got[0], expected[0], atol=1e-5)
    for row, length in enumerate(lengths):
        valid = _cache_end((0 if first else length - new) + new, capacity, window)
        for want, have in zip(expected[1:], got[1:]):
            assert have.shape == want.shape
            np.testing.assert_allclose(have[row, :, :valid], want[row, :, :valid], atol=1e-6)
            assert not have[row, :, valid:].any()


def test_a_window_sized_cache_decodes_past_several_compactions():
    """A prompt, then 9 tokens on a 4-row window in a 5-row cache, the kernel's present fed back to
    both: every step's output equals the kernel's."""
    rng = np.random.default_rng(12)
    prompt, feeds = gqa_model(rng, batch=1, new=3, buffer=5, lengths=[3], local_window_size=4, sliding_window_cache=1)
    step, step_feeds = gqa_model(
        rng, batch=1, new=1, buffer=5, lengths=[4], local_window_size=4, sliding_window_cache=1
    )
    length = 3
    for model in [prompt] + [step] * 9:
        expanded, _ = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
        want, got = _run(model, feeds), _run(expanded, feeds)
        np.testing.assert_allclose(got[0], want[0], atol=1e-5)
        length += 1
        fresh = {name: _tensor(rng, np.float32, *step_feeds[name].shape) for name in ("q", "k", "v")}
        feeds = {**step_feeds, **fresh, "past_key": want[1], "past_value": want[2]}
        feeds.update(seqlens_k=np.array([length - 1], np.int32), total_sequence_length=np.array(length, np.int32))


def _random_case(rng):
    """One random GroupQueryAttention configuration: gqa_model's arguments, and whether it is a first prompt."""
    kv = int(rng.choice([1, 2, 4]))
    args = {"kv_heads": kv, "heads": kv * int(rng.choice([1, 2, 3])), "size": 16}
    args.update(batch=int(rng.integers(1, 4)), new=int(rng.choice([1, 1, 2, 3, 5])))
    ring = rng.random() < 0.25
    flags = {"packed": 0.5, "sink": 0.25, "position_ids": 0.2}
    args.update({name: True for name, p in flags.items() if rng.random() < p})
    if rng.random() < 0.5:
        args.update(rotary=int(rng.choice([8, 16])), interleaved=int(rng.integers(0, 2)))
    if rng.random() < 0.3:
        args["softcap"] = float(rng.choice([0.5, 2.0, 30.0]))
    causal = ring or rng.random() > 0.15
    if not causal:
        args["causal"] = 0
    window = int(rng.integers(1, 6)) if ring or (causal and rng.random() < 0.3) else -1
    if window > 0:
        args["local_window_size"] = window
    if not ring and rng.random() < 0.2:
        args["bias"] = True
    first = not ring and rng.random() < 0.3
    if first:
        args["lengths"] = [args["new"]] + [int(n) for n in rng.integers(1, args["new"] + 1, args["batch"] - 1)]
        args["buffer"] = int(rng.integers(args["new"], args["new"] + 4)) if rng.random() < 0.5 else 0
    else:
        args["lengths"] = [int(n) for n in rng.integers(args["new"] + 1, args["new"] + 12, args["batch"])]
        slack = int(rng.integers(0, 4))
        args["buffer"] = window + slack if ring else max(args["lengths"]) - args["new"] + slack
    if ring:
        args["sliding_window_cache"] = 1
    return args, first


def test_random_configurations_equal_the_kernel_on_every_valid_row():
    """400 seeded random configurations (packing, rotary, windows, window-sized caches, softcap,
    sinks, bias, position ids, padded prompts, buffers longer than the past): wherever onnxruntime
    runs one, the expansion's output on every real token and the present's valid rows equal it.
    (Padded prompt positions are left out: with a window and softcap or a sink the kernel's values
    there depend on its scratch layout; no later step reads them.)"""
    rng, ran = np.random.default_rng(2026), 0
    for _ in range(400):
        args, first = _random_case(rng)
        model, feeds = gqa_model(rng, **args)
        try:
            expected = _run(model, feeds)
        except Exception:  # a combination the kernel refuses (e.g. a rotary table narrower than it wants)
            continue
        expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
        assert found[0].expanded, (args, found[0].reason)
        got, ran = _run(expanded, feeds), ran + 1
        window = args.get("local_window_size", -1)
        for row, length in enumerate(args["lengths"]):
            real = length if first else args["new"]
            np.testing.assert_allclose(got[0][row, :real], expected[0][row, :real], atol=1e-4, err_msg=str(args))
            valid = length if not args.get("sliding_window_cache") else _cache_end(length, args["buffer"], window)
            for want, have in zip(expected[1:], got[1:]):
                np.testing.assert_allclose(have[row, :, :valid], want[row, :, :valid], atol=1e-5, err_msg=str(args))
    assert ran >= 150
