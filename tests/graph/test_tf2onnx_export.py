"""Another exporter: a Keras 3 transformer block traced by TensorFlow and exported by tf2onnx
(tests/data, made by make_tf2onnx_keras.py). Keras writes its attention softmax and classifier
softmax as Softmax, GELU in the tanh form, swish as x * Sigmoid(x), and hard_swish / hard_sigmoid
through ReLU6; every one of them converts, and the model's output stays the original's."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.helpers import run

BLOCK = Path(__file__).resolve().parents[1] / "data" / "tf2onnx_keras_block.onnx"
ALL = ("gelu", "silu", "sigmoid", "tanh", "hardsigmoid", "hardswish")
EXPECTED = [
    ("gelu", "tanh form"),
    ("silu", "x * Sigmoid(x)"),
    ("hardswish", "x * Clip(x + 3, 0, 6) / 6"),
    ("hardsigmoid", "Clip(x + 3, 0, 6) / 6"),
]


@pytest.fixture(scope="module")
def source():
    return onnx.load(str(BLOCK))


def _x(batch=5):
    return np.random.default_rng(0).normal(0, 1, (batch, 8, 32)).astype(np.float32)


def test_every_softmax_and_activation_of_the_keras_block_converts(source):
    new, report = rewrite_model(source, RewriteOptions(activations=ALL))
    assert [s.converted for s in report.sites] == [True, True]
    assert [(a["function"], a["form"]) for a in report.activations] == EXPECTED
    assert report.activation_misses == [] and {"Softmax", "Clip", "Tanh", "Sigmoid"}.isdisjoint(report.ops_after)
    x = _x()
    original, converted = run(source, {"x": x})[0], run(new, {"x": x})[0]
    assert converted.shape == (5, 10)
    np.testing.assert_allclose(converted.sum(-1), 1.0, atol=1e-5)  # the classifier's softmax, spiking
    assert np.abs(converted - original).max() < 0.02  # measured 0.0072
    assert (converted.argmax(-1) == original.argmax(-1)).all()


def test_the_classifier_softmax_alone_is_the_spiking_softmax_of_its_logits(source):
    """--nodes picks one site: the classifier's output is then the reference Spiking-Softmax of the
    logits the original computes (the attention and the activations untouched)."""
    classifier = "functional_1/dense_5_1/Softmax"
    new, report = rewrite_model(source, RewriteOptions(nodes=(classifier,)))
    assert [(s.name, s.converted) for s in report.sites] == [
        ("functional_1/multi_head_attention_1/Softmax", False),
        (classifier, True),
    ]
    assert {"Softmax", "Clip", "Tanh", "Sigmoid"} <= set(report.ops_after)
    probe = onnx.load(str(BLOCK))
    logits = next(n for n in probe.graph.node if n.name == classifier).input[0]
    probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(logits))
    x = _x(3)
    reference = spiking_softmax(
        run(probe, {"x": x})[1], shipped_params(12, SHIFT_RANGE), axis=-1, options=SoftmaxOptions(shift=True)
    )
    np.testing.assert_allclose(run(new, {"x": x})[0], reference, atol=1e-6)
