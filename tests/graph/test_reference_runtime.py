"""Converted models run in onnx's own reference runtime (onnx.reference), in every form the rewrite
writes: the fused op and the explicit chain, as functions and inlined. The function bodies must be
portable ONNX, not only what onnxruntime accepts (a negative GatherElements axis, for one, is not
handled there: the rewrite writes the site's axis non-negative where the rank is known)."""

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.helpers import run, softmax_model

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"


def reference_run(model, feeds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference's numpy divides 0/0 in padded lanes it drops
        return ReferenceEvaluator(model).run(None, feeds)


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("form", [None, "direct", "gated"])  # GELU left alone, or converted either way
def test_bundled_model_runs_in_onnx_reference(fuse, inline, form):
    activations = {"activations": ("gelu",), "activation_form": form} if form else {}
    model, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions(fuse=fuse, inline=inline, **activations))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 1, 8, 8)).astype(np.float32)
    expected = run(model, {"input": x})[0]
    np.testing.assert_allclose(reference_run(model, {"input": x})[0], expected, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, -2, 0, 1])
def test_axes_are_written_non_negative_and_still_mean_the_same(axis):
    model, _ = rewrite_model(softmax_model([2, 3, 5], axis), RewriteOptions(steps=8))
    node = next(n for n in model.graph.node if n.op_type == "SpikingSoftmax")
    written = next(a.i for a in node.attribute if a.name == "axis")
    assert written == axis % 3
    x = np.random.default_rng(1).normal(0, 2, (2, 3, 5)).astype(np.float32)
    expected = spiking_softmax(x, shipped_params(8, SHIFT_RANGE), axis=axis, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(reference_run(model, {"x": x})[0], expected, atol=1e-6)
    np.testing.assert_allclose(run(model, {"x": x})[0], expected, atol=1e-6)


def test_unknown_rank_keeps_the_axis_as_given():
    model = softmax_model([2, 3, 5], -1)
    del model.graph.input[0].type.tensor_type.shape.dim[:]
    model.graph.input[0].type.tensor_type.ClearField("shape")
    new, _ = rewrite_model(model, RewriteOptions(steps=8))
    node = next(n for n in new.graph.node if n.op_type == "SpikingSoftmax")
    assert next(a.i for a in node.attribute if a.name == "axis") == -1


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("inline", [False, True])
def test_every_node_is_named_once(fuse, inline):
    """Tools that key on node names (onnx2torch, onnxconverter-common's float16 pass) need them
    present and unique, in the graph and inside each function body."""
    model, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions(fuse=fuse, inline=inline))
    for nodes in [model.graph.node] + [f.node for f in model.functions]:
        names = [n.name for n in nodes]
        assert all(names) and len(set(names)) == len(names)
