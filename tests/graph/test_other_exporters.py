"""Exporters of other frameworks (files in tests/data, with the scripts that made them): a Keras 3
transformer block traced by TensorFlow and exported by tf2onnx, and a flax `nnx` block exported by
jax2onnx. Keras writes GELU in the tanh form, swish as x * Sigmoid(x), and hard_swish / hard_sigmoid
through ReLU6; jax2onnx writes opset 23's Gelu op and a Softmax on axis 3 of the attention scores.
Every softmax and activation converts, and the model's output stays the original's."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.graph.test_activation_rewrite import ALL
from tests.helpers import run

DATA = Path(__file__).resolve().parents[1] / "data"
EXPORTS = {
    "tf2onnx": {
        "file": "tf2onnx_keras_block.onnx",
        "input": "x",
        "activations": [
            ("gelu", "tanh form"),
            ("silu", "x * Sigmoid(x)"),
            ("hardswish", "x * Clip(x + 3, 0, 6) / 6"),
            ("hardsigmoid", "Clip(x + 3, 0, 6) / 6"),
        ],
        "gone": {"Softmax", "Clip", "Tanh", "Sigmoid"},
        "sites": ["functional_1/multi_head_attention_1/Softmax", "functional_1/dense_5_1/Softmax"],
        "error": 0.02,  # measured 0.0072
    },
    "jax2onnx": {
        "file": "jax2onnx_flax_block.onnx",
        "input": "in_0",
        "activations": [("gelu", "Gelu (approximate=tanh)")],
        "gone": {"Softmax", "Gelu"},
        "sites": ["node_Softmax_34", "node_Softmax_74"],
        "error": 0.02,
    },
}


def _x(batch=5):
    return np.random.default_rng(0).normal(0, 1, (batch, 8, 32)).astype(np.float32)


@pytest.mark.parametrize("exporter", EXPORTS)
def test_every_softmax_and_activation_converts(exporter):
    export = EXPORTS[exporter]
    source = onnx.load(str(DATA / export["file"]))
    new, report = rewrite_model(source, RewriteOptions(activations=ALL))
    assert [(s.name, s.converted) for s in report.sites] == [(name, True) for name in export["sites"]]
    assert [(a["function"], a["form"]) for a in report.activations] == export["activations"]
    assert report.activation_misses == [] and export["gone"].isdisjoint(report.ops_after)
    feeds = {export["input"]: _x()}
    original, converted = run(source, feeds)[0], run(new, feeds)[0]
    assert converted.shape == (5, 10)
    np.testing.assert_allclose(converted.sum(-1), 1.0, atol=1e-5)  # the classifier's softmax, spiking
    assert np.abs(converted - original).max() < export["error"]
    assert (converted.argmax(-1) == original.argmax(-1)).all()


@pytest.mark.parametrize("exporter", EXPORTS)
def test_the_classifier_softmax_alone_is_the_spiking_softmax_of_its_logits(exporter):
    """--nodes picks one site: the classifier's output is then the reference Spiking-Softmax of the
    logits the original computes (the attention and the activations untouched)."""
    export = EXPORTS[exporter]
    attention, classifier = export["sites"]
    source = onnx.load(str(DATA / export["file"]))
    new, report = rewrite_model(source, RewriteOptions(nodes=(classifier,)))
    assert [(s.name, s.converted) for s in report.sites] == [(attention, False), (classifier, True)]
    assert "Softmax" in report.ops_after
    logits = next(n for n in source.graph.node if n.name == classifier).input[0]
    source.graph.output.append(onnx.helper.make_empty_tensor_value_info(logits))
    feeds = {export["input"]: _x(3)}
    reference = spiking_softmax(
        run(source, feeds)[1], shipped_params(12, SHIFT_RANGE), axis=-1, options=SoftmaxOptions(shift=True)
    )
    np.testing.assert_allclose(run(new, feeds)[0], reference, atol=1e-6)
