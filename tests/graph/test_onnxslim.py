"""Converted models through onnxslim and onnxsim (graph optimisers people run before deploying):
every form (fused or chain, functions or inlined) stays valid and computes the same. The inlined neurons'
constants are float32 tensors, never float lists (which onnxslim folds into doubles)."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons.params import SHIFT_RANGE, shipped_params
from tests.helpers import run

onnxslim = pytest.importorskip("onnxslim", reason="onnxslim is an optional tool (installed by the dev extra)")
BUNDLED = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("inline", [False, True])
def test_slimmed_models_compute_the_same(fuse, inline):
    model, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions(fuse=fuse, inline=inline))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 1, 8, 8)).astype(np.float32)
    slim = onnxslim.slim(model)
    assert len(slim.graph.node) < len(model.graph.node)
    np.testing.assert_allclose(run(slim, {"input": x})[0], run(model, {"input": x})[0], atol=1e-5)


@pytest.mark.parametrize("form", ["direct", "gated"])
def test_slimmed_inlined_activations_compute_the_same(form):
    """SpikingActivation's low, high and bias were inlined as `value_float`: onnxslim folded them
    into doubles, and onnxruntime refused the slimmed model (Concat of double and float)."""
    options = RewriteOptions(inline=True, activations=("gelu",), activation_form=form)
    model, report = rewrite_model(onnx.load(str(BUNDLED)), options)
    assert report.activations
    x = np.random.default_rng(2).uniform(-0.5, 0.5, (3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(onnxslim.slim(model), {"input": x})[0], run(model, {"input": x})[0], atol=1e-5)


def test_inlined_constants_are_float32_tensors():
    model, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions(inline=True, activations=("gelu",)))
    constants = [n for n in model.graph.node if n.op_type == "Constant"]
    listed = {"value_floats", "value_float"}
    assert constants and not any(a.name in listed for n in constants for a in n.attribute)
    values = [
        a.t for n in constants for a in n.attribute if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT
    ]
    scalars = {float(onnx.numpy_helper.to_array(t)) for t in values if not t.dims}
    steps = shipped_params(12, SHIFT_RANGE).thresholds  # each step's threshold, computed once as float32
    assert {float(np.float32(t)) for t in steps} <= scalars


@pytest.mark.parametrize("inline", [False, True])
def test_onnxsim_simplified_models_compute_the_same(inline):
    onnxsim = pytest.importorskip("onnxsim", reason="onnxsim is an optional tool (installed by the dev extra)")
    model, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions(inline=inline))
    simplified, ok = onnxsim.simplify(model)
    assert ok and len(simplified.graph.node) < len(model.graph.node)
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(simplified, {"input": x})[0], run(model, {"input": x})[0], atol=1e-5)
