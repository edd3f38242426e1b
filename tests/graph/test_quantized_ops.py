"""onnxruntime ops that hide a softmax outside the float attention ops: the int8 quantizer's
QAttention (dynamic) and QLinearSoftmax (static, QOperator format), and the BiasSoftmax fusion.
Each decomposition agrees with onnxruntime's own kernel (numpy's softmax for BiasSoftmax, which has
no CPU kernel), its softmax becomes an ordinary site, and the converted site follows the numpy
reference of the neurons on its own logits."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.graph.attention import _known_types, expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, softmax, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
B, S, HID, NH = 2, 5, 16, 4


def _ort(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _model(node, inputs, initializers, outputs):
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(o, t, None) for o, t in outputs],
        [numpy_helper.from_array(v, n) for n, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=OPSETS)


def _expanded(model, op):
    expanded, found = expand_attention(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    assert [(a.op, a.expanded, a.reason) for a in found] == [(f"com.microsoft::{op}", True, None)]
    assert not any(n.op_type == op for n in expanded.graph.node)
    assert sum(n.op_type == "Softmax" for n in expanded.graph.node) == 1
    return expanded


def _qattention(rng, weight_type=np.int8, per_column=False, zero_points=True, mask=None, past=False, **attrs):
    """x uint8 [B, S, HID], packed QKV weights 8-bit [HID, 3*HID]: the model and its feeds."""
    low, high = (-100, 100) if weight_type == np.int8 else (0, 255)
    weights = rng.integers(low, high, (HID, 3 * HID))
    columns = 3 * HID if per_column else None
    init = {
        "w": weights.astype(weight_type),
        "bias": rng.normal(0, 0.1, 3 * HID).astype(np.float32),
        "x_scale": np.array(0.02, np.float32),
        "w_scale": (rng.uniform(0.002, 0.006, columns) if per_column else np.array(0.004)).astype(np.float32),
    }
    names = ["x", "w", "bias", "x_scale", "w_scale", "", "", "", ""]
    feeds = {"x": rng.integers(0, 255, (B, S, HID)).astype(np.uint8)}
    inputs = [("x", TensorProto.UINT8, [B, S, HID])]
    total = S + (3 if past else 0)
    if mask == "lengths":
        names[5], feeds["mask"] = "mask", np.array([total - 2, total], np.int32)
        inputs.append(("mask", TensorProto.INT32, [B]))
    elif mask == "raw 2d":
        names[5], feeds["mask"] = "mask", (rng.random((B, total)) > 0.3).astype(np.int32)
        inputs.append(("mask", TensorProto.INT32, [B, total]))
    if zero_points:
        init["x_zp"] = np.array(128, np.uint8)
        w_zp = rng.integers(-3, 4, columns) if per_column else np.array(2)
        init["w_zp"] = (w_zp if weight_type == np.int8 else w_zp + 128).astype(weight_type)
        names[6], names[7] = "x_zp", "w_zp"
    outputs = [("y", TensorProto.FLOAT)]
    if past:
        names[8], feeds["past"] = "past", rng.normal(0, 1, (2, B, NH, 3, HID // NH)).astype(np.float32)
        inputs.append(("past", TensorProto.FLOAT, [2, B, NH, 3, HID // NH]))
        outputs.append(("present", TensorProto.FLOAT))
    while not names[-1]:
        names.pop()
    node = helper.make_node(
        "QAttention", names, [o for o, _ in outputs], name="qa", domain="com.microsoft", num_heads=NH, **attrs
    )
    return _model(node, inputs, init, outputs), feeds


QATTENTION = {
    "int8 weights": {},
    "uint8 weights": {"weight_type": np.uint8},
    "per-column scale and zero point": {"per_column": True},
    "no zero points": {"zero_points": False},
    "lengths mask": {"mask": "lengths"},
    "raw 2d mask": {"mask": "raw 2d", "mask_filter_value": -500.0},
    "unidirectional": {"unidirectional": 1},
    "past": {"past": True},
    "scale": {"scale": 0.1},
}


@pytest.mark.parametrize("case", sorted(QATTENTION))
def test_qattention_decomposition_equals_onnxruntimes_kernel(case):
    model, feeds = _qattention(np.random.default_rng(0), **QATTENTION[case])
    expanded = _expanded(model, "QAttention")
    for want, got in zip(_ort(model, feeds), _ort(expanded, feeds), strict=True):
        np.testing.assert_array_equal(got, want)  # bit for bit: the integer product, scaled as the kernel does


def test_a_qattention_form_not_decomposed_says_why():
    model, _ = _qattention(np.random.default_rng(1), do_rotary=1)
    _, found = expand_attention(model, 17)
    assert [(a.op, a.expanded, a.reason) for a in found] == [
        ("com.microsoft::QAttention", False, "do_rotary is not decomposed yet")
    ]


def _qlinear_softmax(rng, shape, dtype=np.uint8, x_zero_point=True, **attrs):
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    init = {
        "x_scale": np.array(0.05, np.float32),
        "y_scale": np.array(1 / 256, np.float32),
        "y_zp": np.array(low, dtype),  # onnxruntime's quantizer: probabilities from the type's bottom up
    }
    names = ["x", "x_scale", "x_zp", "y_scale", "y_zp"]
    if x_zero_point:
        init["x_zp"] = np.array((low + high + 1) // 2, dtype)
    else:
        names[2] = ""
    elem = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    node = helper.make_node("QLinearSoftmax", names, ["y"], name="qs", domain="com.microsoft", **attrs)
    model = _model(node, [("x", elem, list(shape))], init, [("y", elem)])
    return model, {"x": rng.integers(low, high + 1, shape).astype(dtype)}


QLINEAR_SOFTMAX = {
    "uint8 last axis": ((2, 3, 7), {}, {"opset": 13}),
    "int8 last axis": ((2, 3, 7), {"dtype": np.int8}, {"opset": 13, "axis": -1}),
    "no x zero point": ((4, 9), {"x_zero_point": False}, {"opset": 13}),
    "opset 13, a middle axis": ((2, 6, 3), {}, {"opset": 13, "axis": 1}),
    "opset 12, coerced from axis 1": ((2, 3, 4), {}, {"opset": 12, "axis": 1}),
    "opset 11, int8, coerced from axis 2": ((2, 2, 3, 4), {"dtype": np.int8}, {"opset": 11, "axis": 2}),
    "opset 12, coerced from the last axis": ((2, 3, 5), {}, {"opset": 12, "axis": -1}),
}


@pytest.mark.parametrize("case", sorted(QLINEAR_SOFTMAX))
def test_qlinear_softmax_decomposition_equals_onnxruntimes_kernel(case):
    shape, build, attrs = QLINEAR_SOFTMAX[case]
    model, feeds = _qlinear_softmax(np.random.default_rng(2), shape, **build, **attrs)
    want = _ort(model, feeds)[0]
    expanded = _expanded(model, "QLinearSoftmax")
    got = _ort(expanded, feeds)[0]
    coerced, axis = attrs["opset"] < 13, attrs.get("axis", -1) % len(shape)
    flattens = "Flatten" in [n.op_type for n in expanded.graph.node]
    assert flattens == (coerced and axis != len(shape) - 1)  # the rank known: no Flatten where none is needed
    assert got.dtype == want.dtype and got.shape == want.shape
    # onnxruntime's kernel uses a table of exponentials: one quantum apart at most, and rarely
    difference = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert difference.max() <= 1 and (difference == 0).mean() >= 0.95, difference


def test_the_coerced_softmax_is_over_every_dim_from_its_axis():
    """opset 12's QLinearSoftmax at axis 1 of [2, 3, 4]: rows of 12, not of 3."""
    model, feeds = _qlinear_softmax(np.random.default_rng(3), (2, 3, 4), opset=12, axis=1)
    got = _ort(_expanded(model, "QLinearSoftmax"), feeds)[0].astype(np.float64) / 256  # y_zp is 0
    np.testing.assert_allclose(got.reshape(2, 12).sum(axis=1), 1.0, atol=12 / 256)
    assert not np.allclose(got.sum(axis=1), 1.0, atol=0.05)


def test_converted_qlinear_softmax_follows_the_reference_on_its_own_logits():
    model, feeds = _qlinear_softmax(np.random.default_rng(4), (3, 16), opset=13)
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.converted) == 1 and report.attention[0]["op"] == "com.microsoft::QLinearSoftmax"
    assert "expanded 1 com.microsoft::QLinearSoftmax into standard ops, so the softmax inside each is a site" in (
        report.notes
    )
    assert report.sites[0].name.startswith("qs/Softmax_")  # named after the op it came from
    _, picked = rewrite_model(model, RewriteOptions(nodes=(report.sites[0].name,)))
    assert [s.converted for s in picked.sites] == [True]  # and --nodes can pick it by that name
    logits = (feeds["x"].astype(np.float64) - 128) * np.float32(0.05)
    probs = spiking_softmax(logits, shipped_params(12, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    expected = np.clip(np.round(probs * 256), 0, 255)
    got = _ort(new, feeds)[0]
    assert got.dtype == np.uint8
    np.testing.assert_allclose(got, expected, atol=1)  # float32 rounding at a .5 boundary, at most


def _bias_softmax(shape, bias_shape, axis=None):
    attrs = {"is_inner_broadcast": 0} | ({} if axis is None else {"axis": axis})
    node = helper.make_node("BiasSoftmax", ["x", "bias"], ["y"], name="bs", domain="com.microsoft", **attrs)
    inputs = [("x", TensorProto.FLOAT, list(shape)), ("bias", TensorProto.FLOAT, list(bias_shape))]
    return _model(node, inputs, {}, [("y", TensorProto.FLOAT)])


@pytest.mark.parametrize(
    "shape, bias_shape, axis",
    [
        ((2, 4, 3, 5), (2, 1, 1, 5), 3),  # an attention mask over the keys: a softmax over the last axis
        ((2, 4, 3, 5), (1, 4, 3, 5), -1),
        ((2, 3, 4), (1, 3, 4), None),  # the default axis 1: one row of 12 per batch entry
        ((6, 5), (6, 5), 0),  # everything one row
    ],
)
def test_bias_softmax_decomposition_is_softmax_of_the_sum_from_its_axis_on(shape, bias_shape, axis):
    """onnxruntime has no CPU kernel for it: numpy says what its CUDA kernel computes."""
    rng = np.random.default_rng(5)
    feeds = {"x": rng.normal(0, 2, shape).astype(np.float32), "bias": rng.normal(0, 2, bias_shape).astype(np.float32)}
    expanded = _expanded(_bias_softmax(shape, bias_shape, axis), "BiasSoftmax")
    got = _ort(expanded, feeds)[0]
    start = (1 if axis is None else axis) % len(shape)
    last = start == len(shape) - 1  # with the rank known, the last axis needs no Flatten/Reshape
    assert ("Flatten" in [n.op_type for n in expanded.graph.node]) != last
    rows = (feeds["x"] + feeds["bias"]).reshape(int(np.prod(shape[:start])), -1)
    np.testing.assert_allclose(got, softmax(rows, axis=-1).reshape(shape), atol=1e-6)


def test_bias_softmax_of_unknown_types_still_expands():
    """Its body needs no type: behind an op no inference knows, it still expands."""
    model = _bias_softmax((2, 3), (2, 3), axis=1)
    model.graph.node.insert(0, helper.make_node("Opaque", ["x"], ["x2"], domain="com.example"))
    model.graph.node[1].input[0] = "x2"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    expanded, found = expand_attention(model, 17)
    assert [(a.op, a.expanded) for a in found] == [("com.microsoft::BiasSoftmax", True)]
    assert [n.op_type for n in expanded.graph.node] == ["Opaque", "Add", "Flatten", "Softmax", "Shape", "Reshape"]


@pytest.mark.parametrize(
    "op",
    [
        "DecoderAttention",
        "DecoderMaskedSelfAttention",
        "LongformerAttention",
        "QOrderedAttention",
        "QOrderedLongformerAttention",
        "DynamicSparseAttention",
        "SparsePagedAttention",
    ],
)
def test_other_fused_attention_ops_are_reported_as_left_alone(op):
    node = helper.make_node(op, ["x"], ["y"], name="fused", domain="com.microsoft", num_heads=2)
    model = _model(node, [("x", TensorProto.FLOAT, [1, 3, 8])], {}, [("y", TensorProto.FLOAT)])
    _, found = expand_attention(model, 17)
    assert [(a.op, a.expanded, a.reason) for a in found] == [
        (f"com.microsoft::{op}", False, f"onnxruntime's fused com.microsoft::{op}: not decomposed by sit-onnx yet")
    ]


def _behind_an_unknown_embedding(mask_rank_guessable: bool):
    """QAttention whose mask comes out of an op that neither inference knows, as after
    QEmbedLayerNormalization: onnxruntime's symbolic inference guesses the rank of its input 0."""
    model, _ = _qattention(np.random.default_rng(6), mask="lengths")
    op = "QEmbedLayerNormalization" if mask_rank_guessable else "Opaque"
    domain = "com.microsoft" if mask_rank_guessable else "com.example"
    ids = helper.make_tensor_value_info("ids", TensorProto.INT32, [B, S])
    model.graph.input.append(ids)
    model.graph.node.insert(0, helper.make_node(op, ["ids"], ["unused", "mask2"], domain=domain))
    model.graph.node[1].input[5] = "mask2"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def test_a_guessed_rank_does_not_pick_the_mask_layout():
    """Symbolic inference would guess the mask [B, S] (its input's rank): the fused embedding's
    mask_index is [B] by definition, and an unknown op's mask is left alone, saying why."""
    embedded = _behind_an_unknown_embedding(True)
    known = _known_types(embedded, {"mask2"})
    assert known.ranks["mask2"] == 1 and known.elem_type("mask2") == TensorProto.INT32
    _, found = expand_attention(embedded, 17)
    assert [(a.op, a.expanded) for a in found] == [("com.microsoft::QAttention", True)]
    opaque = _behind_an_unknown_embedding(False)
    assert "mask2" not in _known_types(opaque, {"mask2"}).ranks
    _, found = expand_attention(opaque, 17)
    assert [(a.expanded, a.reason) for a in found] == [
        (False, "the rank of mask_index is unknown (shape inference could not tell), and its layout goes by it")
    ]


@pytest.mark.parametrize("scale, noted", [(np.inf, True), (16.0, True), (15.9, False), (0.05, False), (np.nan, True)])
def test_logits_dequantized_too_coarsely_for_a_softmax_are_noted(scale, noted):
    """A quantizer that calibrated a masked logit (float32's lowest, -inf) makes the step so wide
    that the int8 softmax is uniform or one-hot: any conversion agrees with it, trivially."""
    model, _ = _qlinear_softmax(np.random.default_rng(7), (2, 8), opset=13)
    scale_tensor = next(t for t in model.graph.initializer if t.name == "x_scale")
    scale_tensor.CopyFrom(numpy_helper.from_array(np.array(scale, np.float32), "x_scale"))
    _, report = rewrite_model(model, RewriteOptions())
    notes = [n for n in report.notes if "dequantized in steps of" in n]
    assert len(notes) == noted
    if noted:
        assert notes[0] == (
            f"site {report.sites[0].name!r}: its logits are dequantized in steps of {scale:g}, so the int8 "
            "model's softmax there is uniform or one-hot whatever computes it (its quantizer calibrated a "
            "masked logit: calibrate without padding or masks)"
        )


def _qdq_sites(*producers):
    """One Softmax per (op, inputs) producer of its logits, all on the same uint8 input x; scale
    (a constant), zp, coarse (inf) and bias (20.0, an Add's constant) are at hand."""
    nodes, outputs = [], []
    for k, (op, inputs) in enumerate(producers):
        nodes += [
            helper.make_node(op, inputs, [f"logits{k}"]),
            helper.make_node("Softmax", [f"logits{k}"], [f"y{k}"], axis=-1, name=f"sm{k}"),
        ]
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, None))
    init = {
        "scale": np.array(0.05, np.float32),
        "coarse": np.array(np.inf, np.float32),
        "zp": np.array(128, np.uint8),
        "bias": np.array(20.0, np.float32),
    }
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 8]),
        helper.make_tensor_value_info("f", TensorProto.FLOAT, [2, 8]),
        helper.make_tensor_value_info("runtime_scale", TensorProto.FLOAT, []),
    ]
    initializers = [numpy_helper.from_array(v, n) for n, v in init.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    _, report = rewrite_model(helper.make_model(graph, opset_imports=OPSETS), RewriteOptions())
    return [n.split("'")[1] for n in report.notes if "dequantized in steps of" in n]


def test_a_qdq_softmax_is_checked_the_same_way():
    """Static QDQ keeps the Softmax, with a DequantizeLinear before it: each site is checked, with
    or without a zero point; a scale known only at run time, or another producer, says nothing."""
    noted = _qdq_sites(
        ("Add", ["f", "bias"]),  # a constant of 20 behind another op is no scale
        ("DequantizeLinear", ["x", "scale", "zp"]),  # fine
        ("DequantizeLinear", ["x", "coarse", "zp"]),
        ("DequantizeLinear", ["x", "runtime_scale"]),  # not a constant: nothing to say, no crash
        ("DequantizeLinear", ["x", "coarse"]),  # no zero point
    )
    assert noted == ["sm2", "sm4"]


def test_a_float16_qattention_decomposes_in_float16():
    """QAttention's float inputs may be float16 (its CUDA kernel): the dequantized values are cast
    to it, and the float16 expansion follows the float32 one."""
    rng = np.random.default_rng(8)
    model, feeds = _qattention(rng)
    expected = _ort(_expanded(model, "QAttention"), feeds)[0]
    half = onnx.ModelProto.FromString(model.SerializeToString())
    for tensor in half.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    half.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    expanded = _expanded(half, "QAttention")
    got = _ort(expanded, feeds)[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=0.02, rtol=0.02)


def test_the_embedding_mask_rank_comes_only_where_inference_had_none():
    from sit_onnx.graph.attention import _embedding_mask_types

    def embedding(outputs, domain="com.microsoft", op="QEmbedLayerNormalization"):
        graph = helper.make_graph([helper.make_node(op, ["ids"], outputs, domain=domain)], "g", [], [])
        return helper.make_model(graph)

    told = {"mask": helper.make_tensor_type_proto(TensorProto.INT32, ["rows"])}
    assert _embedding_mask_types(embedding(["out", "mask"]), told) == {}  # inference's own shape stays
    guessed = {"mask": helper.make_tensor_type_proto(TensorProto.INT32, None)}
    added = _embedding_mask_types(embedding(["out", "mask"]), guessed)
    assert list(added) == ["mask"] and len(added["mask"].tensor_type.shape.dim) == 1
    assert list(_embedding_mask_types(embedding(["out", "mask"], op="EmbedLayerNormalization"), {})) == ["mask"]
    assert _embedding_mask_types(embedding(["out"]), {}) == {}  # no mask_index output: nothing, no crash
    assert _embedding_mask_types(embedding(["out", ""]), {}) == {}
    assert _embedding_mask_types(embedding(["out", "mask"], domain="com.example"), {}) == {}


def test_shapes_that_symbolic_inference_knows_are_kept_not_stripped_as_guesses():
    """MultiHeadAttention needs the rank of its query: behind an op that onnx's inference does not
    know but onnxruntime's does (com.microsoft FastGelu), that rank is a fact, not a guess."""
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("FastGelu", ["q0"], ["q"], domain="com.microsoft"),
        helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft", num_heads=2),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8]) for n in ("q0", "k", "v")]
    model = _model(nodes[1], [], {}, [("y", TensorProto.FLOAT)])
    model.graph.node.insert(0, nodes[0])
    model.graph.input.extend(inputs)
    assert _known_types(model, {"q"}).ranks["q"] == 3
    expanded, found = expand_attention(model, 17)
    assert [(a.op, a.expanded) for a in found] == [("com.microsoft::MultiHeadAttention", True)]
    feeds = {n: rng.normal(0, 1, (1, 3, 8)).astype(np.float32) for n in ("q0", "k", "v")}
    np.testing.assert_allclose(_ort(expanded, feeds)[0], _ort(model, feeds)[0], atol=1e-5)


def test_inference_that_cannot_finish_keeps_what_it_found_and_writes_nothing(tmp_path, monkeypatch):
    """onnxruntime's `infer_shapes` saves the whole model into the working directory and raises
    when an op stops it: the pass runs it so that it keeps the shapes it did find, and writes no file."""
    from sit_onnx.graph.symbolic import symbolic_types

    monkeypatch.chdir(tmp_path)
    model = _behind_an_unknown_embedding(False)
    model.graph.input.append(helper.make_tensor_value_info("g0", TensorProto.FLOAT, [1, 3, 8]))
    model.graph.node.insert(0, helper.make_node("FastGelu", ["g0"], ["g1"], domain="com.microsoft"))
    found = symbolic_types(model, guess=False)
    assert "mask2" not in found  # the op nobody knows stopped it...
    assert len(found["g1"].tensor_type.shape.dim) == 3  # ...but what it found before is kept
    _, ops = expand_attention(model, 17)
    assert [a.expanded for a in ops] == [False]
    assert list(tmp_path.iterdir()) == []
