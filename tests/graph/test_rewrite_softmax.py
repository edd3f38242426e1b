"""Softmax nodes of every opset semantic, axis and dtype, against the numpy reference."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, load_params, spiking_softmax
from tests.helpers import run, softmax_model, spiking_ops


def _legacy_reference(x, params, axis, options):
    """Opset < 13: coerce to 2-D at axis, normalise over everything after it."""
    axis = axis % x.ndim
    flat = x.reshape(int(np.prod(x.shape[:axis], dtype=int)), -1)
    return spiking_softmax(flat, params, axis=1, options=options).reshape(x.shape)


@pytest.mark.parametrize("opset", [13, 15, 18, 21])
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, None])
@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("fuse", [None, False])
def test_opset13_semantics_match_reference(params_file, rng, opset, axis, shift, fuse):
    model = softmax_model([2, 3, 4], axis, opset)
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file, shift=shift, fuse=fuse))
    onnx.checker.check_model(new, full_check=True)
    form = ["SpikingSoftmax"] if fuse is None else ["SpikingExp", "SpikingNorm"]  # fused by default
    assert "Softmax" not in report.ops_after and spiking_ops(new) == form
    x = rng.normal(0, 3, (2, 3, 4)).astype(np.float32)
    expected = spiking_softmax(
        x, load_params(params_file), axis=-1 if axis is None else axis, options=SoftmaxOptions(shift=shift)
    )
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


LEGACY_CASES = [
    (opset, axis) for opset in (7, 9, 11, 12) for axis in (0, 1, 2, -1, None) if not (opset < 11 and axis == -1)
]  # negative axes arrived with opset 11


@pytest.mark.parametrize("opset, axis", LEGACY_CASES)
def test_legacy_semantics_flatten_trailing_dims(params_file, rng, opset, axis):
    model = softmax_model([2, 3, 4], axis, opset)
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    onnx.checker.check_model(new, full_check=True)
    assert report.source_opset == opset and report.opset == 13 and "Softmax" not in report.ops_after
    assert "coerced to 2-D" in report.sites[0].semantics
    assert f"model converted from opset {opset} to 13 by onnx.version_converter (legacy Softmax" in report.notes[0]
    x = rng.normal(0, 3, (2, 3, 4)).astype(np.float32)
    expected = _legacy_reference(x, load_params(params_file), 1 if axis is None else axis, SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize("opset", [13, 14, 15, 17])
@pytest.mark.parametrize(
    "dtype, np_dtype, atol", [(TensorProto.FLOAT16, np.float16, 1e-3), (TensorProto.DOUBLE, np.float64, 1e-6)]
)
def test_other_dtypes_keep_their_type(params_file, rng, opset, dtype, np_dtype, atol):
    new, report = rewrite_model(softmax_model([3, 5], -1, opset, dtype), RewriteOptions(params_file=params_file))
    onnx.checker.check_model(new, full_check=True)
    x = rng.normal(0, 3, (3, 5)).astype(np_dtype)
    got = run(new, {"x": x})[0]
    assert got.dtype == np_dtype
    expected = spiking_softmax(x.astype(np.float32), load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=atol)
    casts = report.sites[0].replaced_with.count("Cast")
    assert casts == (0 if np_dtype == np.float16 and opset >= 15 else 2)


def test_dynamic_shapes(params_file, rng):
    new, _ = rewrite_model(softmax_model(["b", "h", None], -1), RewriteOptions(params_file=params_file))
    params = load_params(params_file)
    for shape in [(1, 1, 1), (2, 3, 7), (4, 2, 0)]:
        x = rng.normal(0, 2, shape).astype(np.float32)
        np.testing.assert_allclose(
            run(new, {"x": x})[0], spiking_softmax(x, params, options=SoftmaxOptions(shift=True)), atol=1e-6
        )


@pytest.mark.parametrize("time_steps", [1, 4, 32])
def test_rate_coded_norm(params_file, rng, time_steps):
    new, _ = rewrite_model(softmax_model([6, 8], -1), RewriteOptions(params_file=params_file, time_steps=time_steps))
    x = rng.normal(0, 3, (6, 8)).astype(np.float32)
    got = run(new, {"x": x})[0]
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True, time_steps=time_steps))
    # floor() may land one spike apart where N*w/V_th sits on an integer within rounding
    assert np.mean(np.abs(got - expected) > 1e-6) < 0.01
    np.testing.assert_allclose(got * time_steps, np.round(got * time_steps), atol=1e-4)


def test_sigmoid_inserted_before_exp(params_file, rng):
    options = RewriteOptions(params_file=params_file, sigmoid=True, fuse=False)
    new, report = rewrite_model(softmax_model([2, 9], -1), options)
    assert report.sites[0].replaced_with[:3] == ["Sigmoid", "ReduceMax", "Sub"]
    x = rng.normal(0, 3, (2, 9)).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(sigmoid=True, shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


def test_edge_values_follow_reference(params_file):
    new, _ = rewrite_model(softmax_model([3, 4], -1), RewriteOptions(params_file=params_file))
    x = np.array([[0, 1, -3.4e38, -np.inf], [-3.4e38] * 4, [np.nan, 0, 1, 2]], dtype=np.float32)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("shift, sigmoid, time_steps", [(True, False, 0), (False, False, 0), (True, True, 8)])
def test_fused_form_matches_reference(params_file, rng, opset, axis, shift, sigmoid, time_steps):
    options = RewriteOptions(params_file=params_file, shift=shift, sigmoid=sigmoid, time_steps=time_steps, fuse=True)
    new, report = rewrite_model(softmax_model([2, 3, 4], axis, opset), options)
    onnx.checker.check_model(new, full_check=True)
    assert report.sites[0].replaced_with == ["SpikingSoftmax"] and spiking_ops(new) == ["SpikingSoftmax"]
    x = rng.normal(0, 3, (2, 3, 4)).astype(np.float32)
    expected = spiking_softmax(
        x,
        load_params(params_file),
        axis=axis,
        options=SoftmaxOptions(sigmoid=sigmoid, shift=shift, time_steps=time_steps),
    )
    got = run(new, {"x": x})[0]
    if time_steps:
        assert np.count_nonzero(np.abs(got - expected) > 1e-6) <= 0.02 * got.size
    else:
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_ensemble_set_emits_summed_members(tmp_path, rng):
    from sit_onnx.neurons import NeuronParams

    ensemble = NeuronParams(
        [-1.0, -3.0, -6.0], [1.5, 2.0, 3.0], rng.uniform(0, 1, 9), (-12, 0), offsets=(-0.2, 0.0, 0.2)
    )
    path = tmp_path / "ensemble.json"
    ensemble.save(path)
    new, report = rewrite_model(softmax_model([4, 7], -1), RewriteOptions(params_file=str(path)))
    onnx.checker.check_model(new, full_check=True)
    assert report.sites[0].replaced_with.count("SpikingExp") == 3
    x = rng.normal(0, 3, (4, 7)).astype(np.float32)
    expected = spiking_softmax(x, ensemble, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)
    assert any("ensemble of 3 neurons cannot fuse" in note for note in report.notes)
    with pytest.raises(Exception, match="--fuse takes a single-neuron parameter set; this one is an ensemble of 3"):
        rewrite_model(softmax_model([4, 7], -1), RewriteOptions(params_file=str(path), fuse=True))
    pair = NeuronParams([-1.0, -3.0], [1.5, 2.0], rng.uniform(0, 1, 4), (-12, 0), offsets=(-0.1, 0.1))
    pair.save(tmp_path / "pair.json")  # the smallest ensemble refused too
    with pytest.raises(Exception, match="--fuse takes a single-neuron parameter set; this one is an ensemble of 2"):
        rewrite_model(softmax_model([4, 7], -1), RewriteOptions(params_file=str(tmp_path / "pair.json"), fuse=True))


def _bfloat16_model():
    """float32 in and out, a bfloat16 softmax between (numpy cannot feed bfloat16 to onnxruntime)."""
    from onnx import helper

    nodes = [
        helper.make_node("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16),
        helper.make_node("Softmax", ["xb"], ["yb"], name="sm", axis=-1),
        helper.make_node("Cast", ["yb"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("fuse", [None, False])
def test_bfloat16_softmax_is_cast_around_the_spiking_ops(params_file, rng, fuse):
    new, report = rewrite_model(_bfloat16_model(), RewriteOptions(params_file=params_file, fuse=fuse))
    onnx.checker.check_model(new, full_check=True)
    assert report.sites[0].replaced_with[0] == "Cast" and report.sites[0].replaced_with[-1] == "Cast"
    x = rng.normal(0, 3, (3, 5)).astype(np.float32)
    import ml_dtypes

    x_bf16 = x.astype(ml_dtypes.bfloat16).astype(np.float32)  # what the softmax sees
    expected = spiking_softmax(x_bf16, load_params(params_file), options=SoftmaxOptions(shift=True))
    expected = expected.astype(ml_dtypes.bfloat16).astype(np.float32)  # and what it gives back
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 0), (0, 4)])
@pytest.mark.parametrize("inline", [False, True])
def test_fused_form_on_an_empty_axis_runs_in_the_function_body(params_file, shape, inline):
    options = RewriteOptions(params_file=params_file, inline=inline)
    new, _ = rewrite_model(softmax_model(list(shape), -1), options)
    assert run(new, {"x": np.zeros(shape, np.float32)})[0].shape == shape  # helpers.run: no library


def test_float16_chain_computes_the_shift_in_float32(params_file, rng):
    """The chain casts float16 logits up before the max-shift, like the fused op: a float16 Sub would
    round x - max first, and onnxruntime keeps or drops that rounding depending on the path."""
    options = RewriteOptions(params_file=params_file, fuse=False)
    new, report = rewrite_model(softmax_model([4, 33], -1, 17, TensorProto.FLOAT16), options)
    assert report.sites[0].replaced_with == ["Cast", "ReduceMax", "Sub", "SpikingExp", "SpikingNorm", "Cast"]
    x = rng.normal(0, 3, (4, 33)).astype(np.float16)
    expected = spiking_softmax(x, load_params(params_file), options=SoftmaxOptions(shift=True))
    np.testing.assert_array_equal(run(new, {"x": x})[0], expected)


def test_an_upgraded_model_without_softmax_says_nothing_of_softmax_semantics():
    """The upgrade note names the legacy Softmax semantics only where a Softmax was upgraded."""
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Sigmoid", ["x"], ["s"]),
            onnx.helper.make_node("Mul", ["x", "s"], ["y"]),
        ],
        "g",
        [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 11)])
    model.ir_version = 7
    _, report = rewrite_model(model, RewriteOptions(activations=("silu",)))
    assert report.notes[0] == "model converted from opset 11 to 13 by onnx.version_converter"


@pytest.mark.parametrize(
    "dtype, np_dtype, casts",
    [(TensorProto.FLOAT16, np.float16, 0), (TensorProto.DOUBLE, np.float64, 2), (TensorProto.FLOAT, np.float32, 0)],
)
def test_ensemble_offsets_take_the_type_the_members_compute_in(tmp_path, rng, dtype, np_dtype, casts):
    """Each member's input offset is a constant of the type its Add sees: float16 stays float16 in
    the chain (no shift: nothing casts it up), float64 is cast to float32 around the spiking ops."""
    from sit_onnx.neurons import NeuronParams

    ensemble = NeuronParams([-1.0, -3.0], [1.5, 2.0], rng.uniform(0, 1, 4), (-12, 0), offsets=(-0.25, 0.25))
    path = tmp_path / "ensemble.json"
    ensemble.save(path)
    options = RewriteOptions(params_file=str(path), shift=False)
    new, report = rewrite_model(softmax_model([3, 6], -1, 17, dtype), options)
    assert report.sites[0].replaced_with.count("Cast") == casts
    x = rng.uniform(-3, 0, (3, 6)).astype(np_dtype)
    expected = spiking_softmax(x.astype(np.float32), ensemble, options=SoftmaxOptions(shift=False))
    got = run(new, {"x": x})[0]
    assert got.dtype == np_dtype
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=2e-3 if np_dtype == np.float16 else 1e-6)


@pytest.mark.parametrize(
    "shape, axis, written",
    [([2, 3, 4], -1, 2), ([2, 3, 4], -3, 0), ([2, 3, 4], 1, 1), ([5], -1, 0), (None, -1, -1)],
)
@pytest.mark.parametrize("fuse", [True, False])
def test_a_negative_axis_is_written_non_negative_where_the_rank_is_known(params_file, rng, shape, axis, written, fuse):
    """onnx.reference mishandles a negative axis in the fused op's body: the axis written is counted
    from the front wherever the logits' rank is known, and left as it is where it is not."""
    new, _ = rewrite_model(softmax_model(shape, axis), RewriteOptions(params_file=params_file, fuse=fuse))
    axes = {
        n.op_type: onnx.helper.get_attribute_value(a)
        for n in new.graph.node
        for a in n.attribute
        if a.name in ("axis", "axes")
    }
    assert axes[["SpikingNorm", "SpikingSoftmax"][fuse]] == written
    if not fuse:  # opset 17: ReduceMax takes its axes as an attribute
        assert axes["ReduceMax"] == [written]
    x = rng.normal(0, 2, shape or [2, 3, 4]).astype(np.float32)
    expected = spiking_softmax(x, load_params(params_file), axis=axis, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize("name, prefix", [("attn/Softmax", "attn/Softmax/"), ("", "softmax@y/")])
@pytest.mark.parametrize("fuse", [True, False])
def test_inserted_nodes_are_named_after_the_softmax_they_replace(params_file, name, prefix, fuse):
    """A profile or a graph viewer shows which softmax a spiking node came from (an unnamed one is
    named after the tensor it wrote)."""
    new, _ = rewrite_model(softmax_model([2, 5], -1, name=name), RewriteOptions(params_file=params_file, fuse=fuse))
    inserted = list(new.graph.node)
    assert inserted and all(n.name.startswith(prefix + "sit_") for n in inserted)
    assert len({n.name for n in inserted}) == len(inserted)
    made = [t for n in inserted for t in n.output if t != "y"]
    assert all(t.startswith(prefix) for t in made)


def test_fresh_names_count_up_past_the_names_taken():
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.rewrite_softmax import NamePool

    x = gs.Variable("a", dtype=np.float32, shape=[1])
    names = NamePool(gs.Graph(nodes=[gs.Node("Relu", "a_1", inputs=[x], outputs=[gs.Variable("b")])], inputs=[x]))
    assert [names.fresh("a"), names.fresh("a"), names.fresh("c"), names.fresh("c")] == ["a_2", "a_3", "c", "c_1"]


def test_logits_of_unknown_type_are_taken_as_float32_without_casts():
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.rewrite_softmax import _logits_type

    assert _logits_type(gs.Variable("untyped")) == (np.dtype(np.float32), TensorProto.FLOAT)


def test_the_default_domain_spelled_ai_onnx_is_read_as_the_model_opset(params_file):
    model = softmax_model([2, 5], -1, 17)
    model.opset_import[0].domain = "ai.onnx"
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file))
    assert not any("converted from opset" in note for note in report.notes), report.notes
    assert [n.op_type for n in new.graph.node] == ["SpikingSoftmax"]


@pytest.mark.parametrize(
    "options, label",
    [
        ({}, "shipped K=12 on [-12.0, 0.0], fitted to softmax"),
        ({"objective": "exp-rmse"}, "shipped K=12 on [-12.0, 0.0], fitted to exp-rmse"),
        ({"shift": False}, "shipped K=12 on [-1.0, 1.0], fitted to exp-rmse"),
        ({"steps": 8}, "shipped K=8 on [-12.0, 0.0], fitted to softmax"),
    ],
)
def test_the_report_names_the_shipped_set_used(options, label):
    _, report = rewrite_model(softmax_model([2, 5], -1), RewriteOptions(**options))
    assert report.params == label


def test_the_report_names_a_given_set_by_its_path(params_file):
    _, report = rewrite_model(softmax_model([2, 5], -1), RewriteOptions(params_file=params_file))
    assert report.params == params_file


@pytest.mark.parametrize("opset", [13, 15, 18, 21])
@pytest.mark.parametrize("time_steps, elem_type", [(0, TensorProto.FLOAT), (8, TensorProto.FLOAT16)])
def test_onnx_infers_the_shape_through_spiking_exp_at_every_opset(opset, time_steps, elem_type):
    """onnx's shape inference reads SpikingExp's body: in the chain form its output has the input's
    shape (before opset 14 the parameters' check, a Reshape to a computed shape, had left the
    neuron's numbers and so its output without one). SpikingNorm's sum along an axis given as an
    attribute ends inference there (README), so the site's own output keeps no inferred shape."""
    from onnx import helper

    dims = [2, "n", 5, 3]
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["p"], axis=1, name="sm"), helper.make_node("Relu", ["p"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", elem_type, dims)],
        [helper.make_tensor_value_info("y", elem_type, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    new, report = rewrite_model(model, RewriteOptions(fuse=False, time_steps=time_steps))
    assert [s.converted for s in report.sites] == [True]
    del new.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(new, strict_mode=True)
    typed = {v.name: v.type.tensor_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    (exp_out,) = [n.output[0] for n in new.graph.node if n.op_type == "SpikingExp"]
    assert [d.dim_value or d.dim_param for d in typed[exp_out].shape.dim] == dims
    assert typed[exp_out].elem_type in (elem_type, TensorProto.FLOAT)  # float32 where the rewrite casts around
    assert not typed["p"].HasField("shape")
