"""ONNX's standard Attention (opset 23, 24) expanded into its own function body: the expansion
agrees with onnxruntime's kernel, and its softmax is converted like any other. Fused attention
ops of onnxruntime are reported as left alone, never silently."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.validate import checker_complaint
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE

B, HQ, HKV, S, L, P, D = 2, 4, 2, 5, 7, 3, 8


def _ort(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _attention_model(opset, three_d=False, mask=None, past=False, outputs=("Y",), **attrs):
    """Q, K, V (and mask, past) as graph inputs; returns the model and random feeds."""
    rng = np.random.default_rng(0)
    hkv = attrs.get("kv_num_heads", HQ) if three_d or "kv_num_heads" in attrs else HQ
    if three_d:
        shapes = {"Q": [B, S, HQ * D], "K": [B, L, hkv * D], "V": [B, L, hkv * D]}
        attrs.setdefault("q_num_heads", HQ)
        attrs.setdefault("kv_num_heads", hkv)
    else:
        shapes = {"Q": [B, HQ, S, D], "K": [B, hkv, L, D], "V": [B, hkv, L, D]}
        attrs.pop("q_num_heads", None), attrs.pop("kv_num_heads", None)
    feeds = {n: rng.normal(0, 1, s).astype(np.float32) for n, s in shapes.items()}
    names = ["Q", "K", "V"]
    total = L + (P if past else 0)
    if mask is not None:
        names.append("attn_mask")
        if mask == "bool":
            feeds["attn_mask"] = rng.random((S, total)) > 0.3
            feeds["attn_mask"][:, 0] = True
            shapes["attn_mask"] = [S, total]
        else:
            feeds["attn_mask"] = np.where(rng.random((B, 1, S, total)) > 0.3, 0.0, -1e9).astype(np.float32)
            shapes["attn_mask"] = [B, 1, S, total]
    if past:
        names += [""] * (4 - len(names)) if mask is None else []
        names += ["past_key", "past_value"]
        for n in ("past_key", "past_value"):
            shapes[n] = [B, hkv, P, D]
            feeds[n] = rng.normal(0, 1, shapes[n]).astype(np.float32)
    types = {n: TensorProto.BOOL if n == "attn_mask" and mask == "bool" else TensorProto.FLOAT for n in shapes}
    inputs = [helper.make_tensor_value_info(n, types[n], shapes[n]) for n in names if n]
    node = helper.make_node("Attention", names, list(outputs), name="attention", **attrs)
    graph_outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o]
    graph = helper.make_graph([node], "g", inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model, feeds


CASES = {
    "plain": {},
    "3d": {"three_d": True},
    "causal": {"is_causal": 1},
    "scale": {"scale": 0.3},
    "softcap": {"softcap": 2.5},
    "bool mask": {"mask": "bool"},
    "float mask": {"mask": "float"},
    "gqa 3d": {"three_d": True, "kv_num_heads": HKV},
    "past": {"past": True, "outputs": ("Y", "present_key", "present_value")},
    "past + causal": {"past": True, "is_causal": 1, "outputs": ("Y", "present_key", "present_value")},
    "qk output": {"qk_matmul_output_mode": 1, "outputs": ("Y", "", "", "qk_out")},
}


def _assert_expansion_equals_onnxruntime(model, feeds, op, opset=17):
    """Expand `model`'s one attention op; every output equals onnxruntime's kernel to 1e-5.
    Returns the expanded model."""
    expected = _ort(model, feeds)
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), opset)
    assert [(a.op, a.expanded) for a in found] == [(op, True)], found
    for want, got in zip(expected, _ort(expanded, feeds)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    return expanded


@pytest.mark.parametrize("opset", [23, 24])
@pytest.mark.parametrize("case", sorted(CASES))
def test_expansion_equals_onnxruntimes_attention(opset, case):
    model, feeds = _attention_model(opset, **dict(CASES[case]))
    expanded = _assert_expansion_equals_onnxruntime(model, feeds, "Attention", opset)
    assert not any(n.op_type == "Attention" for n in expanded.graph.node)
    assert sum(n.op_type == "Softmax" for n in expanded.graph.node) == 1


def _with_outputs(model, names):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    return model


@pytest.mark.parametrize("case", ["plain", "causal", "float mask", "gqa 3d", "softcap"])
def test_converted_attention_follows_the_reference_on_its_own_logits(case):
    model, feeds = _attention_model(23, **dict(CASES[case]))
    new, report = rewrite_model(model, RewriteOptions())
    # its outputs are declared without a shape, as in the source: the checker says the same of both
    assert checker_complaint(new) == checker_complaint(model) == "Field 'shape' of 'type' is required but missing."
    assert len(report.converted) == 1 and report.attention[0]["expanded"]
    assert "expanded 1 Attention into standard ops, so the softmax inside each is a site" in report.notes
    site = report.sites[0]
    assert site.name.startswith("attention/Softmax_"), site.name  # ONNX's body names no node: we do
    logits, got = _ort(_with_outputs(new, [site.logits, site.output]), feeds)[-2:]
    expected = spiking_softmax(logits, shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    original = _ort(model, feeds)[0]
    converted = _ort(new, feeds)[0]
    cosine = float((original * converted).sum() / np.linalg.norm(original) / np.linalg.norm(converted))
    assert cosine > 0.999


def test_fully_masked_rows_give_what_the_original_gives():
    model, feeds = _attention_model(23, mask="bool")
    feeds["attn_mask"][1] = False  # query row 1 sees nothing
    original = _ort(model, feeds)[0]
    new, _ = rewrite_model(model, RewriteOptions())
    converted = _ort(new, feeds)[0]
    assert not np.isnan(converted).any()
    np.testing.assert_allclose(converted[:, :, 1], original[:, :, 1], atol=1e-6)


def _fused_attention_model():
    nodes = [
        helper.make_node("Softmax", ["x"], ["s"], name="plain_softmax", axis=-1),
        helper.make_node("PackedAttention", ["q", "k", "v"], ["y"], name="packed", domain="com.microsoft", num_heads=2),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8]) for n in ("x", "q", "k", "v")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("s", "y")]
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_fused_attention_op_is_reported_as_left_alone(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_fused_attention_model(), str(path))
    result = CliRunner().invoke(main, ["rewrite", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 of 1 softmax sites converted; 1 attention op(s) left as they were" in result.output
    assert "com.microsoft::PackedAttention node 'packed'" in result.output
    record = json.loads(CliRunner().invoke(main, ["rewrite", str(path), "-o", tmp_path / "j.onnx", "--json"]).stdout)
    assert record["attention"] == [
        {
            "name": "packed",
            "op": "com.microsoft::PackedAttention",
            "graph": "g",
            "expanded": False,
            "reason": "onnxruntime's fused com.microsoft::PackedAttention: not decomposed by sit-onnx yet",
        }
    ]
    strict = CliRunner().invoke(main, ["rewrite", str(path), "-o", tmp_path / "s.onnx", "--strict"])
    assert strict.exit_code == 1 and "(--strict)" in strict.stderr and not (tmp_path / "s.onnx").exists()


def test_only_fused_attention_says_why_nothing_converted():
    model = _fused_attention_model()
    del model.graph.node[0]
    del model.graph.input[0]
    del model.graph.output[0]
    with pytest.raises(Exception, match="no Softmax.*1 attention op\\(s\\) left as they were"):
        rewrite_model(model, RewriteOptions())


def test_onnxruntime_ops_in_the_default_domain_are_not_refused(tmp_path):
    """onnxruntime's optimiser writes SimplifiedLayerNormalization into the default domain: onnx's
    checker does not know it, onnxruntime runs it. Converted, with the checker's complaint as a note."""
    scale = onnx.numpy_helper.from_array(np.ones(6, np.float32), "scale")
    nodes = [
        helper.make_node("SimplifiedLayerNormalization", ["x", "scale"], ["n"], name="rms", axis=-1, epsilon=1e-5),
        helper.make_node("Softmax", ["n"], ["y"], name="sm", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    original = _ort(model, {"x": x})[0]
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1
    assert any(
        "already fails onnx's checker (No Op registered for SimplifiedLayerNormalization" in n for n in report.notes
    )
    np.testing.assert_allclose(_ort(new, {"x": x})[0], original, atol=0.05)


def test_outputs_without_shape_are_not_refused():
    """onnxconverter-common's float16 pass leaves graph outputs typed but without a shape field."""
    model, _ = _attention_model(23)
    with pytest.raises(onnx.checker.ValidationError, match="Field 'shape'"):
        onnx.checker.check_model(model)
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1 and any("Field 'shape'" in n for n in report.notes)


# onnxruntime's com.microsoft Attention (BERT-style: packed QKV weights) and MultiHeadAttention.
HID, NH = 16, 4


def _ms_model(op, inputs, outputs, **attrs):
    """inputs: (name, elem type, shape, value); returns the model and its feeds."""
    names = [i[0] for i in inputs]
    graph_inputs = [helper.make_tensor_value_info(n, t, s) for n, t, s, _ in inputs if n]
    node = helper.make_node(op, names, list(outputs), name="fused", domain="com.microsoft", num_heads=NH, **attrs)
    graph_outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o]
    graph = helper.make_graph([node], "g", graph_inputs, graph_outputs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets), {n: v for n, _, _, v in inputs if n}


def _attention_inputs(rng, mask=None, past=False, bias=True, attention_bias=False, v_hidden=HID):
    b, s, p = 2, 5, 3
    total = s + (p if past else 0)
    f32 = TensorProto.FLOAT
    inputs = [
        ("input", f32, [b, s, HID], rng.normal(0, 1, (b, s, HID)).astype(np.float32)),
        ("weights", f32, [HID, 2 * HID + v_hidden], rng.normal(0, 0.5, (HID, 2 * HID + v_hidden)).astype(np.float32)),
        ("bias", f32, [2 * HID + v_hidden], rng.normal(0, 0.1, 2 * HID + v_hidden).astype(np.float32))
        if bias
        else ("", f32, None, None),
    ]
    masks = {
        "lengths": (TensorProto.INT32, [b], np.array([total - 2, total], np.int32)),
        "ends+starts": (TensorProto.INT32, [2 * b], np.array([total - 1, total, 1, 0], np.int32)),
        "raw 2d": (TensorProto.INT32, [b, total], (rng.random((b, total)) > 0.3).astype(np.int32)),
        "raw 3d": (TensorProto.INT32, [b, s, total], (rng.random((b, s, total)) > 0.3).astype(np.int32)),
        "all masked": (TensorProto.INT32, [b, total], np.stack([np.ones(total), np.zeros(total)]).astype(np.int32)),
    }
    if mask:
        elem, shape, value = masks[mask]
        inputs.append(("mask_index", elem, shape, value))
    elif past or attention_bias:
        inputs.append(("", f32, None, None))
    if past:
        inputs.append(
            ("past", f32, [2, b, NH, p, HID // NH], rng.normal(0, 1, (2, b, NH, p, HID // NH)).astype(np.float32))
        )
    elif attention_bias:
        inputs.append(("", f32, None, None))
    if attention_bias:
        inputs.append(
            ("attention_bias", f32, [1, NH, s, total], rng.normal(0, 1, (1, NH, s, total)).astype(np.float32))
        )
    return inputs


MS_ATTENTION = {
    "plain": ({}, {}),
    "no bias": ({"bias": False}, {}),
    "lengths": ({"mask": "lengths"}, {}),
    "ends+starts": ({"mask": "ends+starts"}, {}),
    "raw 2d": ({"mask": "raw 2d"}, {}),
    "raw 3d": ({"mask": "raw 3d"}, {}),
    "all masked": ({"mask": "all masked"}, {}),
    "unidirectional": ({}, {"unidirectional": 1}),
    "past": ({"past": True}, {}),
    "past unidirectional mask": ({"past": True, "mask": "raw 2d"}, {"unidirectional": 1}),
    "attention bias": ({"attention_bias": True}, {}),
    "scale + filter": ({"mask": "raw 2d"}, {"scale": 0.2, "mask_filter_value": -500.0}),
    "v hidden": ({"v_hidden": 8}, {"qkv_hidden_sizes": [HID, HID, 8]}),
}


@pytest.mark.parametrize("case", sorted(MS_ATTENTION))
def test_ms_attention_decomposition_equals_onnxruntimes_kernel(case):
    build, attrs = MS_ATTENTION[case]
    outputs = ("y", "present") if build.get("past") else ("y",)
    model, feeds = _ms_model("Attention", _attention_inputs(np.random.default_rng(1), **build), outputs, **attrs)
    expanded = _assert_expansion_equals_onnxruntime(model, feeds, "com.microsoft::Attention")
    assert sum(n.op_type == "Softmax" for n in expanded.graph.node) == 1


def _mha_inputs(rng, cross=False, bias=False, mask=None, attention_bias=False, past=False):
    b, s, p = 2, 4, 3
    kv = 6 if cross else s
    total = kv + (p if past else 0)
    f32 = TensorProto.FLOAT
    inputs = [
        (n, f32, [b, length, HID], rng.normal(0, 1, (b, length, HID)).astype(np.float32))
        for n, length in (("q", s), ("k", kv), ("v", kv))
    ]
    inputs.append(
        ("bias", f32, [3 * HID], rng.normal(0, 0.1, 3 * HID).astype(np.float32)) if bias else ("", f32, None, None)
    )
    if mask == "raw 2d":
        inputs.append(("kpm", TensorProto.INT32, [b, total], (rng.random((b, total)) > 0.3).astype(np.int32)))
    elif mask == "lengths":
        inputs.append(("kpm", TensorProto.INT32, [b], np.array([total - 1, total], np.int32)))
    else:
        inputs.append(("", f32, None, None))
    shape = [1, NH, s, total]
    inputs.append(
        ("ab", f32, shape, rng.normal(0, 1, shape).astype(np.float32)) if attention_bias else ("", f32, None, None)
    )
    if past:
        for n in ("pk", "pv"):
            inputs.append((n, f32, [b, NH, p, HID // NH], rng.normal(0, 1, (b, NH, p, HID // NH)).astype(np.float32)))
    while inputs and not inputs[-1][0]:
        inputs.pop()
    return inputs


MHA = {
    "self": ({}, {}),
    "cross": ({"cross": True}, {}),
    "bias": ({"bias": True}, {}),
    "raw mask": ({"mask": "raw 2d"}, {}),
    "lengths": ({"mask": "lengths"}, {}),
    "attention bias": ({"attention_bias": True}, {}),
    "unidirectional": ({}, {"unidirectional": 1}),
    "past": ({"past": True}, {}),
    "scale": ({"bias": True}, {"scale": 0.3}),
}


@pytest.mark.parametrize("case", sorted(MHA))
def test_multi_head_attention_decomposition_equals_onnxruntimes_kernel(case):
    build, attrs = MHA[case]
    outputs = ("y", "present_key", "present_value") if build.get("past") else ("y",)
    model, feeds = _ms_model("MultiHeadAttention", _mha_inputs(np.random.default_rng(2), **build), outputs, **attrs)
    _assert_expansion_equals_onnxruntime(model, feeds, "com.microsoft::MultiHeadAttention")


def _in_float16(model: onnx.ModelProto, feeds: dict) -> tuple[onnx.ModelProto, dict]:
    """The same model with float16 inputs and outputs (as onnxruntime's float16 optimizer leaves a
    fused attention op), and its feeds rounded to float16."""
    half = onnx.ModelProto.FromString(model.SerializeToString())
    for value in [*half.graph.input, *half.graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    return half, {n: v.astype(np.float16) if v.dtype == np.float32 else v for n, v in feeds.items()}


FLOAT16_CASES = [("Attention", case) for case in sorted(MS_ATTENTION)] + [
    ("MultiHeadAttention", case) for case in sorted(MHA)
]


@pytest.mark.parametrize("op, case", FLOAT16_CASES)
def test_float16_attention_ops_decompose_in_float16_as_the_kernel_computes(op, case):
    """Every constant the body makes (scale, mask filter, zero) takes the op's float type: a float32
    one beside float16 scores is a model onnxruntime refuses to load."""
    build, attrs = (MS_ATTENTION if op == "Attention" else MHA)[case]
    inputs = (_attention_inputs if op == "Attention" else _mha_inputs)(np.random.default_rng(5), **build)
    past = ("present",) if op == "Attention" else ("present_key", "present_value")
    model, feeds = _in_float16(*_ms_model(op, inputs, ("y", *past) if build.get("past") else ("y",), **attrs))
    kernel = _ort(model, feeds)
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [a.expanded for a in found] == [True]
    got = _ort(expanded, feeds)
    assert [g.dtype for g in got] == [np.dtype(np.float16)] * len(kernel)
    for want, value in zip(kernel, got, strict=True):
        np.testing.assert_allclose(value.astype(np.float32), want.astype(np.float32), atol=4e-3, rtol=4e-3)


@pytest.mark.parametrize(
    "op, inputs",
    [
        ("Attention", lambda rng: _attention_inputs(rng, mask="raw 2d")),
        ("MultiHeadAttention", lambda rng: _mha_inputs(rng, cross=True, bias=True, mask="raw 2d")),
    ],
    ids=["Attention", "MultiHeadAttention"],
)
@pytest.mark.parametrize("half", [False, True], ids=["float32", "float16"])
def test_converted_ms_attention_follows_the_reference(op, inputs, half):
    model, feeds = _ms_model(op, inputs(np.random.default_rng(3)), ("y",))
    if half:
        model, feeds = _in_float16(model, feeds)
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1 and report.attention[0]["expanded"]
    site = report.sites[0]
    assert site.name.startswith("fused/Softmax_"), site.name
    logits, got = _ort(_with_outputs(new, [site.logits, site.output]), feeds)[-2:]
    expected = spiking_softmax(logits, shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    assert got.dtype == logits.dtype == expected.dtype == (np.float16 if half else np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_undecomposed_form_says_why():
    model, _ = _ms_model("Attention", _attention_inputs(np.random.default_rng(4)), ("y",), do_rotary=1)
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, "do_rotary is not decomposed yet")]


@pytest.mark.parametrize("outputs", [("y", "present_key"), ("y", "", "present_value")])
def test_a_present_output_without_a_past_is_written_on_its_own(outputs):
    """Without a past, each present output is the new keys or values in heads, asked for alone too."""
    model, feeds = _ms_model("MultiHeadAttention", _mha_inputs(np.random.default_rng(2)), outputs)
    _assert_expansion_equals_onnxruntime(model, feeds, "com.microsoft::MultiHeadAttention")


def _without(inputs, name):
    """The inputs with `name` left out (an empty name in its place, trailing empties dropped)."""
    kept = [i if i[0] != name else ("", TensorProto.FLOAT, None, None) for i in inputs]
    while not kept[-1][0]:
        kept.pop()
    return kept


PAST_FORMS = {
    "Attention's past without its present output": (
        "Attention", lambda rng: _attention_inputs(rng, past=True), ("y",),
        "a past without the present output (onnxruntime's kernel refuses it)",
    ),
    "past_key without past_value": (
        "MultiHeadAttention", lambda rng: _without(_mha_inputs(rng, past=True), "pv"),
        ("y", "present_key", "present_value"),
        "only one of past_key and past_value (onnxruntime's kernel refuses it)",
    ),
    "past_value without past_key": (
        "MultiHeadAttention", lambda rng: _without(_mha_inputs(rng, past=True), "pk"),
        ("y", "present_key", "present_value"),
        "only one of past_key and past_value (onnxruntime's kernel refuses it)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("form", sorted(PAST_FORMS))
def test_a_past_the_kernel_refuses_is_left_alone_with_why(form):
    """Decomposed, these ran where onnxruntime's own kernel refuses to: the past dropped or half used."""
    op, inputs, outputs, reason = PAST_FORMS[form]
    model, feeds = _ms_model(op, inputs(np.random.default_rng(6)), outputs)
    with pytest.raises(Exception, match="past"):
        _ort(model, feeds)
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, reason)]
    assert [n.op_type for n in expanded.graph.node] == [op]


@pytest.mark.parametrize("outputs", [("y",), ("y", "present_key"), ("y", "", "present_value")])
def test_a_multi_head_past_without_both_present_outputs_is_left_alone_with_why(outputs):
    """onnxruntime 1.32's CPU kernel then gives neither the result with the past nor the one without
    it (measured: 1.1 to 2.4 away from both on these inputs, and from every mix of past and new keys
    tried), so there is nothing a decomposition could follow. Not asserted here: no form defines it."""
    model, _ = _ms_model("MultiHeadAttention", _mha_inputs(np.random.default_rng(2), past=True), outputs)
    _, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.expanded, a.reason) for a in found] == [
        (False, "a past without both present outputs (onnxruntime's CPU kernel gives no defined result)")
    ]


def test_nodes_out_of_order_are_sorted_but_dangling_inputs_refused(tmp_path):
    from tests.helpers import softmax_model

    model = softmax_model([2, 5], -1)
    model.graph.node.insert(0, helper.make_node("Relu", ["r"], ["y2"]))  # reads what the Softmax below makes
    model.graph.node[1].output[0] = "r"
    model.graph.node.append(helper.make_node("Identity", ["y2"], ["y"]))
    new, report = rewrite_model(model, RewriteOptions())
    assert [n.op_type for n in new.graph.node] == ["SpikingSoftmax", "Relu", "Identity"]
    onnx.checker.check_model(new, full_check=True)
    model.graph.node[0].input[0] = "nowhere"
    with pytest.raises(Exception, match="not a valid ONNX model"):
        rewrite_model(model, RewriteOptions())


def _gqa_from_inputs(inputs, heads, kv_heads, attrs):
    """A GroupQueryAttention model from (name, type, shape, value) inputs ("" for absent ones) and its feeds."""
    node = helper.make_node(
        "GroupQueryAttention",
        [i[0] for i in inputs],
        ["y", "pko", "pvo"],
        name="gqa",
        domain="com.microsoft",
        num_heads=heads,
        kv_num_heads=kv_heads,
        **attrs,
    )
    graph_inputs = [helper.make_tensor_value_info(n, t, sh) for n, t, sh, _ in inputs if n]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y", "pko", "pvo")]
    graph = helper.make_graph([node], "g", graph_inputs, outputs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets), {n: v for n, _, _, v in inputs if n}


def _gqa_model(rng, heads=4, kv_heads=2, lengths=(5, 3), **attrs):
    b, s, size = 2, 5, 8
    f32, i32 = TensorProto.FLOAT, TensorProto.INT32
    inputs = [
        ("q", f32, [b, s, heads * size], rng.normal(0, 1, (b, s, heads * size)).astype(np.float32)),
        ("k", f32, [b, s, kv_heads * size], rng.normal(0, 1, (b, s, kv_heads * size)).astype(np.float32)),
        ("v", f32, [b, s, kv_heads * size], rng.normal(0, 1, (b, s, kv_heads * size)).astype(np.float32)),
        ("", f32, None, None),
        ("", f32, None, None),
        ("seqlens_k", i32, [b], np.array(lengths, np.int32) - 1),
        ("total_len", i32, [], np.array(s, np.int32)),
    ]
    return _gqa_from_inputs(inputs, heads, kv_heads, attrs)


@pytest.mark.parametrize(
    "heads, kv_heads, lengths, attrs",
    [(4, 2, (5, 3), {}), (4, 4, (5, 5), {}), (4, 1, (2, 5), {"scale": 0.2})],
    ids=["gqa", "mha", "mqa+scale"],
)
def test_group_query_attention_prompt_equals_onnxruntimes_kernel(heads, kv_heads, lengths, attrs):
    model, feeds = _gqa_model(np.random.default_rng(5), heads, kv_heads, lengths, **attrs)
    _assert_expansion_equals_onnxruntime(model, feeds, "com.microsoft::GroupQueryAttention")
    new, report = rewrite_model(model, RewriteOptions())
    converted = _ort(new, feeds)[0]
    expected = _ort(model, feeds)[0]
    cosine = float((expected * converted).sum() / np.linalg.norm(expected) / np.linalg.norm(converted))
    assert len(report.converted) == 1 and cosine > 0.999


def test_group_query_attention_without_what_it_needs_is_left_alone_with_why():
    model, _ = _gqa_model(np.random.default_rng(6), do_rotary=1)
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, "do_rotary without cos_cache and sin_cache")]
    windowed, _ = _gqa_model(np.random.default_rng(6), local_window_size=0)
    _, found = expand_attention(windowed, 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, "local_window_size 0 leaves no key to attend to")]


def _gqa_cache_model(rng, batch, new, past, rotary=None, interleaved=0, position_ids=False, lengths=None, size=16):
    """GroupQueryAttention with a KV cache (and rotary embeddings): heads 4, kv heads 2."""
    heads, kv_heads, max_positions = 4, 2, 32
    f32, i32 = TensorProto.FLOAT, TensorProto.INT32
    total = past + new
    inputs = [
        ("q", f32, [batch, new, heads * size], rng.normal(0, 1, (batch, new, heads * size)).astype(np.float32)),
        ("k", f32, [batch, new, kv_heads * size], rng.normal(0, 1, (batch, new, kv_heads * size)).astype(np.float32)),
        ("v", f32, [batch, new, kv_heads * size], rng.normal(0, 1, (batch, new, kv_heads * size)).astype(np.float32)),
        ("pk", f32, [batch, kv_heads, past, size], rng.normal(0, 1, (batch, kv_heads, past, size)).astype(np.float32)),
        ("pv", f32, [batch, kv_heads, past, size], rng.normal(0, 1, (batch, kv_heads, past, size)).astype(np.float32)),
        ("seqlens_k", i32, [batch], np.array(lengths or [total] * batch, np.int32) - 1),
        ("total_len", i32, [], np.array(total, np.int32)),
    ]
    attrs = {}
    if rotary:
        angles = np.arange(max_positions)[:, None] / 10000 ** (np.arange(0, rotary, 2) / rotary)[None, :]
        inputs += [
            ("cos", f32, [max_positions, rotary // 2], np.cos(angles).astype(np.float32)),
            ("sin", f32, [max_positions, rotary // 2], np.sin(angles).astype(np.float32)),
        ]
        if position_ids:  # a shift of the default positions (past ... total - 1), per row
            ids = np.arange(past, total, dtype=np.int64)[None, :] + np.arange(batch)[:, None] * 3 + 2
            inputs.append(("position_ids", TensorProto.INT64, [batch, new], ids))
        attrs = {"do_rotary": 1} if interleaved is None else {"do_rotary": 1, "rotary_interleaved": interleaved}
    return _gqa_from_inputs(inputs, heads, kv_heads, attrs)


GQA_CACHE = {
    "decode batch 2": {"batch": 2, "new": 1, "past": 5},
    "prefill on a past": {"batch": 1, "new": 3, "past": 4},
    "rotary halves": {"batch": 2, "new": 1, "past": 5, "rotary": 16},
    "rotary interleaved": {"batch": 1, "new": 3, "past": 4, "rotary": 16, "interleaved": 1},
    "partial rotary": {"batch": 2, "new": 1, "past": 5, "rotary": 16, "size": 32},
    "rotary position ids": {"batch": 2, "new": 1, "past": 5, "rotary": 16, "position_ids": True},
    "rotary position ids, prefill on a past": {"batch": 1, "new": 3, "past": 4, "rotary": 16, "position_ids": True},
    "partial rotary interleaved": {"batch": 2, "new": 1, "past": 5, "rotary": 16, "size": 32, "interleaved": 1},
    "rotary, interleaving by default": {"batch": 2, "new": 1, "past": 5, "rotary": 16, "interleaved": None},
}


@pytest.mark.parametrize("case", sorted(GQA_CACHE))
def test_group_query_attention_with_cache_and_rotary_equals_onnxruntimes_kernel(case):
    model, feeds = _gqa_cache_model(np.random.default_rng(7), **GQA_CACHE[case])
    _assert_expansion_equals_onnxruntime(model, feeds, "com.microsoft::GroupQueryAttention")
    new, report = rewrite_model(model, RewriteOptions())
    site = report.sites[0]
    logits, got = _ort(_with_outputs(new, [site.logits, site.output]), feeds)[-2:]
    reference = spiking_softmax(logits, shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got, reference, atol=1e-6)


def test_a_rewrite_failing_the_full_check_is_refused_when_the_source_passed_it():
    """Against a clean source, a new complaint of the full check is ours: refused even where the
    structure (the basic check) is sound."""
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.graph.validate import SourceCheck, check_source, validate_model
    from tests.helpers import softmax_model

    clean = softmax_model([2, 5], -1)
    assert check_source(clean, "m") == SourceCheck(None, None)
    broken = onnx.ModelProto.FromString(clean.SerializeToString())
    broken.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64  # Softmax gives float
    assert checker_complaint(broken, full=False) is None and checker_complaint(broken) is not None
    with pytest.raises(SitOnnxError, match="the rewritten model fails onnx's checker"):
        validate_model(broken, SourceCheck(None, None))
    validate_model(broken, SourceCheck(checker_complaint(broken), None))  # the source's own complaint


def test_against_a_source_failing_the_full_check_only_the_structure_is_required():
    """A source the full check refuses (onnxruntime's ops, shapeless outputs): the rewrite may fail
    the full check another way if its structure (the basic check) is sound or fails as the
    source's did; a new structural fault is ours and refused."""
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.graph.validate import SourceCheck, validate_model
    from tests.helpers import softmax_model

    typed_wrong = softmax_model([2, 5], -1)
    typed_wrong.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64  # basic check passes
    dirty_source = SourceCheck("the source's own full-check complaint", None)
    validate_model(typed_wrong, dirty_source)
    with pytest.raises(SitOnnxError, match="the rewritten model fails onnx's checker"):
        validate_model(typed_wrong, SourceCheck(None, None))
    unsorted = softmax_model([2, 5], -1)
    unsorted.graph.node[0].input[0] = "nowhere"  # fails the basic check too
    complaint = checker_complaint(unsorted, full=False)
    with pytest.raises(SitOnnxError) as refused:
        validate_model(unsorted, dirty_source)
    assert str(refused.value) == f"the rewritten model fails onnx's checker: {checker_complaint(unsorted)}"
    validate_model(unsorted, SourceCheck("another full-check complaint", complaint))  # as the source's


def test_group_query_attention_without_seqlens_is_left_alone_not_a_crash():
    f32 = TensorProto.FLOAT
    inputs = [(n, f32, [1, 3, 32], np.zeros((1, 3, 32), np.float32)) for n in ("q", "k", "v")]
    model, _ = _gqa_from_inputs(inputs, 4, 2, {})
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, "its required input seqlens_k (input 5) is missing")]


def test_an_op_left_alone_does_not_stop_the_next_from_expanding():
    """Two Attention nodes: the first (do_rotary) is left alone with its reason, the second still
    expands; each entry names its node and graph."""
    model, feeds = _ms_model("Attention", _attention_inputs(np.random.default_rng(1)), ("y",))
    rotary = helper.make_node(
        "Attention",
        ["input", "weights", "bias"],
        ["y_rot"],
        name="rotary",
        domain="com.microsoft",
        num_heads=NH,
        do_rotary=1,
    )
    model.graph.node.insert(0, rotary)
    model.graph.output.append(helper.make_tensor_value_info("y_rot", TensorProto.FLOAT, None))
    expanded, found = expand_attention(model, 17)
    assert [(a.name, a.op, a.graph, a.expanded, a.reason) for a in found] == [
        ("rotary", "com.microsoft::Attention", "g", False, "do_rotary is not decomposed yet"),
        ("fused", "com.microsoft::Attention", "g", True, None),
    ]
    assert [n.name for n in expanded.graph.node if n.op_type == "Attention"] == ["rotary"]


def _in_if_branch(inner: onnx.ModelProto) -> onnx.ModelProto:
    """The model's graph as the then-branch of an If (as merged decoders hold theirs), beside a
    main-graph Softmax; the branch's nodes read `input` through a branch-local tensor, whose type
    only inference inside the branch can tell."""
    nodes = [helper.make_node("Identity", ["input"], ["branch_input"], name="local")]
    for node in inner.graph.node:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        node.input[:] = ["branch_input" if name == "input" else name for name in node.input]
        nodes.append(node)
    branch = helper.make_graph(nodes, "then_branch", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    other = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["y2"], name="pass")],
        "else_branch",
        [],
        [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)],
    )
    node = helper.make_node("If", ["cond"], ["out"], name="if", then_branch=branch, else_branch=other)
    inputs = list(inner.graph.input) + [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])]
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["input"], ["s"], name="sm"), node],
        "main",
        inputs,
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
        ],
    )
    return helper.make_model(graph, opset_imports=list(inner.opset_import))


def test_attention_ops_inside_a_subgraph_are_expanded_and_converted():
    """An attention op inside an If branch is expanded like one in the main graph (its types come
    from inference inside the branch), then its softmax converted."""
    inner, feeds = _ms_model("Attention", _attention_inputs(np.random.default_rng(2), mask="raw 2d"), ("y",))
    model = _in_if_branch(inner)
    feeds = {**feeds, "cond": np.array(True)}
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.name, a.op, a.graph, a.expanded, a.reason) for a in found] == [
        ("fused", "com.microsoft::Attention", "then_branch", True, None)
    ]
    branch = next(a.g for a in expanded.graph.node[1].attribute if a.name == "then_branch")
    assert "branch_input" in [n.input[0] for n in branch.node if n.op_type == "MatMul"]
    assert "Attention" not in {n.op_type for n in branch.node} and "Softmax" in {n.op_type for n in branch.node}
    np.testing.assert_allclose(_ort(expanded, feeds)[0], _ort(model, feeds)[0], atol=1e-5)
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 2 and report.attention[0]["expanded"]
    assert report.attention[0]["graph"] == "then_branch"
    assert {s.name.split("/")[0] for s in report.sites} == {"sm", "fused"}
    assert 1e-6 < np.abs(_ort(new, feeds)[0] - _ort(model, feeds)[0]).max() < 0.05


def test_attention_ops_inside_a_subgraph_left_alone_say_their_graph_and_why():
    inner, _ = _ms_model("Attention", _attention_inputs(np.random.default_rng(2)), ("y",), do_rotary=1)
    _, report = rewrite_model(_in_if_branch(inner), RewriteOptions())
    assert report.attention == [
        {
            "name": "fused",
            "op": "com.microsoft::Attention",
            "graph": "then_branch",
            "expanded": False,
            "reason": "do_rotary is not decomposed yet",
        }
    ]
    assert len(report.converted) == 1


def test_two_attention_ops_expand_each_by_its_own_attributes():
    """A causal and a scaled Attention in one model: each gets the body made for its attributes
    (one shared body would make both causal, or both scaled)."""
    model, feeds = _attention_model(23, is_causal=1)
    other = helper.make_node("Attention", ["Q", "K", "V"], ["Y2"], name="scaled", scale=0.3)
    model.graph.node.append(other)
    model.graph.output.append(helper.make_tensor_value_info("Y2", TensorProto.FLOAT, None))
    expected = _ort(model, feeds)
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 23)
    assert [(a.name, a.expanded) for a in found] == [("attention", True), ("scaled", True)]
    got = _ort(expanded, feeds)
    assert np.abs(expected[0] - expected[1]).max() > 0.1  # the two really differ
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have, want, atol=1e-5)


def test_the_ai_onnx_spelling_of_the_default_domain_expands_too():
    model, feeds = _attention_model(23, is_causal=1)
    expected = _ort(model, feeds)[0]
    model.graph.node[0].domain = "ai.onnx"
    model.opset_import.append(helper.make_opsetid("ai.onnx", 23))
    expanded, found = expand_attention(model, 23)
    assert [(a.op, a.expanded) for a in found] == [("Attention", True)]
    np.testing.assert_allclose(_ort(expanded, feeds)[0], expected, atol=1e-5)


@pytest.mark.parametrize("opset, expanded", [(12, False), (13, True)])
def test_onnxruntimes_attention_needs_opset_13(opset, expanded):
    """The decompositions use opset-13 ops (Split with sizes as an input, ReduceSum's axes input)."""
    model, feeds = _ms_model("Attention", _attention_inputs(np.random.default_rng(5)), ("y",))
    model.opset_import[0].version = opset
    new, found = expand_attention(model, opset)
    assert [(a.expanded, a.reason) for a in found] == [
        (expanded, None if expanded else "the model's opset is below 13")
    ]
    if expanded:
        np.testing.assert_allclose(_ort(new, feeds)[0], _ort(model, feeds)[0], atol=1e-5)


@pytest.mark.parametrize(
    "op, given, reason",
    [
        ("Attention", ["input"], "its required input weights (input 1) is missing"),
        ("Attention", ["input", ""], "its required input weights (input 1) is missing"),
        ("QAttention", ["input", "weights", "bias", ""], "its required input input_scale (input 3) is missing"),
        ("BiasSoftmax", ["input"], "its required input bias (input 1) is missing"),
    ],
)
def test_an_op_lacking_an_input_its_schema_requires_is_left_alone_with_why(op, given, reason):
    """A one-input Attention (the activation fuzzer renamed a Sigmoid) died of an IndexError in its
    decomposition; the required inputs come from onnxruntime's own schemas."""
    rng = np.random.default_rng(0)
    known = {name: value for name, _, _, value in _attention_inputs(rng) if name}
    inputs = [
        (n, TensorProto.FLOAT, list(known[n].shape), known[n]) if n else ("", TensorProto.FLOAT, None, None)
        for n in given
    ]
    model, _ = _ms_model(op, inputs, ("y",))
    _, found = expand_attention(model, 17)
    assert [(a.expanded, a.reason) for a in found] == [(False, reason)]


def test_required_inputs_are_read_from_onnxruntimes_schemas():
    from sit_onnx.graph.attention import _required_inputs

    assert _required_inputs("Attention") == [(0, "input"), (1, "weights")]
    assert _required_inputs("MultiHeadAttention") == [(0, "query")]  # key and value: optional (packed QKV)
    assert [p for p, _ in _required_inputs("GroupQueryAttention")] == [0, 5, 6]
    assert _required_inputs("SkipLayerNormalization") == []  # not decomposed: nothing read by position
