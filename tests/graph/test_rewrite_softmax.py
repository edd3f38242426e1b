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
def test_opset13_semantics_match_reference(params_file, rng, opset, axis, shift):
    model = softmax_model([2, 3, 4], axis, opset)
    new, report = rewrite_model(model, RewriteOptions(params_file=params_file, shift=shift))
    onnx.checker.check_model(new, full_check=True)
    assert "Softmax" not in report.ops_after and spiking_ops(new) == ["SpikingExp", "SpikingNorm"]
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
    x = rng.normal(0, 3, (2, 3, 4)).astype(np.float32)
    expected = _legacy_reference(x, load_params(params_file), 1 if axis is None else axis, SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize("opset", [13, 17])
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
    new, report = rewrite_model(softmax_model([2, 9], -1), RewriteOptions(params_file=params_file, sigmoid=True))
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
    with pytest.raises(Exception, match="--fuse takes a single-neuron parameter set; this one is an ensemble of 3"):
        rewrite_model(softmax_model([4, 7], -1), RewriteOptions(params_file=str(path), fuse=True))
