"""onnxruntime's MultiHeadAttention with `past_sequence_length` and `cache_indirection`, as its Whisper
export writes every attention of the decoder for beam search (the DecoderMaskedMultiHeadAttention
path: past key and value are buffers of the maximum length shared with the present outputs). It was
left alone ("not decomposed yet"). The expansion is checked against onnxruntime's CPU kernel:
present buffers, the output, and the converted model's output near it."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from tests.graph.test_attention import NH, _ms_model, _ort

N, H, MAX = NH, 8, 7  # _ms_model writes num_heads=NH
F32, I32 = TensorProto.FLOAT, TensorProto.INT32
ABSENT = ("", F32, None, None)
MHA = "com.microsoft::MultiHeadAttention"


def _decoder_step(
    batch, beams, new, start, indirection=True, mask=False, bias=False, unidirectional=0, seed=0, length=MAX, **attrs
):
    """One self-attention step: `new` queries and keys for B·beams rows over buffers of `length`
    positions, the past `start` long; returns the model and its feeds."""
    rng = np.random.default_rng(seed)
    rows = batch * beams

    def random(*shape):
        return rng.normal(0, 1, shape).astype(np.float32)

    inputs = [(name, F32, [rows, new, N * H], random(rows, new, N * H)) for name in ("q", "k", "v")]
    inputs += [("bias", F32, [3 * N * H], random(3 * N * H) * 0.3) if bias else ABSENT]
    inputs += [("kpm", I32, [rows, start + new], (rng.random((rows, start + new)) > 0.3).astype(np.int32))]
    inputs = inputs if mask else [*inputs[:4], ABSENT]
    inputs += [ABSENT, *[(name, F32, [rows, N, length, H], random(rows, N, length, H)) for name in ("pk", "pv")]]
    inputs += [("psl", I32, [1], np.array([start], np.int32))]
    if indirection:
        indices = rng.integers(0, beams, (batch, beams, length)).astype(np.int32)
        inputs += [("ci", I32, [batch, beams, length], indices)]
    outputs = ("y", "present_key", "present_value")
    return _ms_model("MultiHeadAttention", inputs, outputs, unidirectional=unidirectional, **attrs)


def _expanded(model):
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.op, a.expanded, a.reason) for a in found] == [(MHA, True, None)]
    return expanded


CASES = {
    "greedy": dict(batch=2, beams=1, new=1, start=3),
    "beams": dict(batch=1, beams=3, new=1, start=4),
    "beams, two rows": dict(batch=2, beams=2, new=1, start=5),
    "first step": dict(batch=2, beams=2, new=1, start=0),
    "last slot": dict(batch=1, beams=2, new=1, start=MAX - 1),
    "no indirection": dict(batch=2, beams=2, new=1, start=3, indirection=False),
    "two new tokens": dict(batch=2, beams=1, new=2, start=3, indirection=False),
    "bias and mask": dict(batch=2, beams=2, new=1, start=3, bias=True, mask=True),
    "causal": dict(batch=2, beams=1, new=2, start=2, indirection=False, unidirectional=1),
    "long buffer": dict(batch=1, beams=2, new=1, start=250, length=300),  # Whisper's is 448
    "scale and filter": dict(batch=2, beams=2, new=1, start=3, mask=True, scale=0.3, mask_filter_value=-3.0),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_expansion_equals_onnxruntimes_kernel(case):
    model, feeds = _decoder_step(**CASES[case])
    expected = _ort(model, feeds)
    got = _ort(_expanded(model), feeds)
    for name, want, have in zip(("output", "present key", "present value"), expected, got):
        assert want.shape == have.shape, name
        np.testing.assert_allclose(have, want, atol=2e-5, err_msg=name)


def test_the_indirection_is_read_and_the_buffers_keep_what_is_not_written():
    """Not equal by accident: another indirection changes the output, and every buffer position
    but the one written is the past's own."""
    model, feeds = _decoder_step(batch=1, beams=3, new=1, start=4)
    expanded = _expanded(model)
    first = _ort(expanded, feeds)
    feeds["ci"] = (feeds["ci"] + 1) % 3
    second = _ort(expanded, feeds)
    assert np.abs(first[0] - second[0]).max() > 1e-3
    np.testing.assert_allclose(second[0], _ort(model, feeds)[0], atol=2e-5)
    kept = [t for t in range(MAX) if t != 4]
    np.testing.assert_array_equal(first[1][:, :, kept], feeds["pk"][:, :, kept])
    np.testing.assert_array_equal(first[2][:, :, kept], feeds["pv"][:, :, kept])


def test_cross_attention_ignores_the_step_inputs():
    """The export gives the cross-attention (key and value of the encoder, in heads, no past) the
    same two inputs: onnxruntime attends over every encoder position and reads no indirection."""
    rng = np.random.default_rng(3)
    rows, frames = 4, 5
    inputs = [
        ("q", F32, [rows, 1, N * H], rng.normal(0, 1, (rows, 1, N * H)).astype(np.float32)),
        *[
            (name, F32, [rows, N, frames, H], rng.normal(0, 1, (rows, N, frames, H)).astype(np.float32))
            for name in "kv"
        ],
        ABSENT,
        ABSENT,
        ABSENT,
        ABSENT,
        ABSENT,
        ("psl", I32, [1], np.array([3], np.int32)),
        ("ci", I32, [2, 2, MAX], rng.integers(0, 2, (2, 2, MAX)).astype(np.int32)),
    ]
    model, feeds = _ms_model("MultiHeadAttention", inputs, ("y",))
    np.testing.assert_allclose(_ort(_expanded(model), feeds)[0], _ort(model, feeds)[0], atol=2e-5)
    inputs[1:3] = [(name, F32, [rows, frames, N * H], rng.normal(0, 1, (rows, frames, N * H)).astype(np.float32))
                   for name in "kv"]  # fmt: skip
    model, feeds = _ms_model("MultiHeadAttention", inputs, ("y",))  # key and value of [B, L, D]: the same
    np.testing.assert_allclose(_ort(_expanded(model), feeds)[0], _ort(model, feeds)[0], atol=2e-5)


def test_the_converted_step_stays_near_the_source():
    model, feeds = _decoder_step(batch=2, beams=2, new=1, start=5)
    new, report = rewrite_model(model, RewriteOptions())
    assert [a["expanded"] for a in report.attention] == [True] and len(report.converted) == 1
    expected, got = _ort(model, feeds), _ort(new, feeds)
    assert np.abs(got[0] - expected[0]).max() < 0.05
    np.testing.assert_array_equal(got[1], expected[1])  # the buffers are written, not approximated


@pytest.mark.parametrize(
    "change, reason",
    [
        ("qk", "the qk output is not decomposed yet"),
        ("indirection alone", "cache_indirection without past_sequence_length is no form onnxruntime defines"),
        ("one past", "past_sequence_length with only one of past_key and past_value is not decomposed"),
        ("one past, no indirection", "past_sequence_length with only one of past_key and past_value is not decomposed"),
    ],
)
def test_forms_left_alone_say_why(change, reason):
    model, _ = _decoder_step(batch=1, beams=2, new=1, start=3, indirection=change != "one past, no indirection")
    node = model.graph.node[0]
    if change == "qk":
        node.output.append("qk")
    elif change == "indirection alone":
        node.input[8] = ""
    else:
        node.input[7] = ""
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, reason)]


def _as_decoder_masked(model, share=1):
    """The same step as a DecoderMaskedMultiHeadAttention node (convert_generation's decoding
    attention): its inputs in its own order, beam_width given."""
    node = model.graph.node[0]
    mha = list(node.input) + [""] * (10 - len(node.input))
    inputs = [*mha[0:3], mha[4], mha[5], mha[6], mha[7], mha[8], "beam_width" if mha[9] else "", mha[9], mha[3]]
    while not inputs[-1]:
        inputs.pop()
    new = onnx.helper.make_node(
        "DecoderMaskedMultiHeadAttention", inputs, list(node.output), "decoding", domain="com.microsoft", num_heads=N
    )
    new.attribute.extend(a for a in node.attribute if a.name in ("scale", "mask_filter_value"))
    if share is not None:
        new.attribute.append(onnx.helper.make_attribute("past_present_share_buffer", share))
    del model.graph.node[:]
    model.graph.node.append(new)
    if "beam_width" in inputs:
        model.graph.input.append(onnx.helper.make_tensor_value_info("beam_width", I32, [1]))
    return model


DMMHA = "com.microsoft::DecoderMaskedMultiHeadAttention"


@pytest.mark.parametrize(
    "case", ["greedy", "beams", "beams, two rows", "first step", "bias and mask", "scale and filter"]
)
def test_decoder_masked_multi_head_attention_equals_its_kernel(case):
    """It was left alone; onnxruntime's CPU kernel computes what MultiHeadAttention does with the
    same inputs, so it is decomposed as that one."""
    model, feeds = _decoder_step(**CASES[case])
    model = _as_decoder_masked(model)
    if "beam_width" in {i.name for i in model.graph.input}:
        feeds["beam_width"] = np.array([CASES[case]["beams"]], np.int32)
    expected = _ort(model, feeds)
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.op, a.expanded) for a in found] == [(DMMHA, True)]
    for want, have in zip(expected, _ort(expanded, feeds)):
        np.testing.assert_allclose(have, want, atol=2e-5)
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1 and np.abs(_ort(new, feeds)[0] - expected[0]).max() < 0.05


@pytest.mark.parametrize(
    "change, reason",
    [
        ("no share", "a past without past_present_share_buffer=1 (onnxruntime's CPU kernel refuses it)"),
        ("share absent", "a past without past_present_share_buffer=1 (onnxruntime's CPU kernel refuses it)"),
        ("no length", "a shared past without past_sequence_length (onnxruntime's kernel refuses it)"),
        ("qk output", "the qk output is not decomposed yet"),
        ("qk attribute", "the qk output is not decomposed yet"),
        ("rotary", "attribute do_rotary is not one sit-onnx knows; left as it is rather than dropped"),
    ],
)
def test_decoder_masked_forms_left_alone_say_why(change, reason):
    model, _ = _decoder_step(batch=1, beams=2, new=1, start=3)
    model = _as_decoder_masked(model, share={"no share": 0, "share absent": None}.get(change, 1))
    node = model.graph.node[0]
    if change == "no length":
        node.input[7] = ""
    elif change == "qk output":
        node.output.append("qk")
    elif change == "qk attribute":
        node.attribute.append(onnx.helper.make_attribute("output_qk", 1))
    elif change == "rotary":
        node.attribute.append(onnx.helper.make_attribute("do_rotary", 1))
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, reason)]


@pytest.mark.parametrize("kept", [("y",), ("y", "present_key"), ("y", "", "present_value")])
def test_a_shared_past_without_both_present_outputs_is_left_alone_as_the_kernel_refuses_it(kept):
    """The past and the present share one buffer: without both present outputs there is none to
    write, and onnxruntime's kernel refuses the node at run time; decomposed, it ran."""
    model, feeds = _decoder_step(batch=1, beams=2, new=1, start=3)
    node = model.graph.node[0]
    del node.output[:]
    node.output.extend(kept)
    del model.graph.output[1:]
    model.graph.output.extend(o for o in _decoder_step(1, 2, 1, 3)[0].graph.output if o.name in kept[1:])
    with pytest.raises(Exception, match="Shared past/present buffer requires both present_key and present_value"):
        _ort(model, feeds)
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [
        (False, "a shared past without both present outputs (onnxruntime's kernel refuses it)")
    ]
