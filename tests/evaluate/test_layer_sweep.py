"""The layer-by-layer sweep on a two-site model: row n is the model with exactly its first n sites converted."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate import layers
from sit_onnx.evaluate.datasets import LabelledData
from sit_onnx.evaluate.layers import layer_sweep
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime import SessionSpec
from tests.helpers import SHARED_SCOPE, record_session_specs, run

OPTIONS = RewriteOptions(steps=4)  # inexact enough that each converted site shows


def _two_sites():
    rng = np.random.default_rng(11)
    weights = {
        "w1": 3 * rng.normal(size=(6, 5)),
        "w2": 12 * rng.normal(size=(5, 5)),
        "v": rng.normal(size=(5, 4)),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["s1"]),
        helper.make_node("Softmax", ["s1"], ["p1"], name="first", axis=-1),
        helper.make_node("MatMul", ["p1", "w2"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["p2"], name="second", axis=-1),
        helper.make_node("MatMul", ["p2", "v"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope=SHARED_SCOPE)
def setting():
    model = _two_sites()
    x = np.random.default_rng(12).normal(size=(300, 6)).astype(np.float32)  # more than one batch of 256
    outputs = [run(model, {"x": x})[0]]
    outputs += [run(rewrite_model(model, RewriteOptions(steps=4, first=n))[0], {"x": x})[0] for n in (1, 2)]
    return model, x, outputs


def test_labelled_rows_are_the_first_n_sites_converted(setting):
    model, x, outputs = setting
    ann = outputs[0].argmax(1)
    labels = ann.copy()
    labels[:30] = (labels[:30] + 1) % 4  # the original is right on 90%
    ticks = []
    rows = layer_sweep(model, OPTIONS, LabelledData({"x": x}, labels, "mem"), progress=ticks.append)
    assert ticks == [1, 1, 1]
    assert [(r.converted_sites, r.last_site) for r in rows] == [(0, "-"), (1, "first"), (2, "second")]
    for row, out in zip(rows, outputs, strict=True):
        predictions = out.argmax(1)
        assert row.accuracy == pytest.approx(np.mean(predictions == labels))
        assert row.agreement == pytest.approx(np.mean(predictions == ann))
        assert row.loss_points == pytest.approx(100 * (np.mean(ann == labels) - np.mean(predictions == labels)))
        assert row.cosine is None
    assert rows[0].accuracy == pytest.approx(0.9) and rows[0].loss_points == 0 and rows[0].agreement == 1
    assert rows[1].agreement != rows[2].agreement  # the second site changes predictions on its own


def test_label_free_rows_compare_the_first_output(setting):
    model, x, outputs = setting
    ticks = []
    rows = layer_sweep(model, OPTIONS, LabelledData({"x": x}, None, "mem"), progress=ticks.append)
    assert ticks == [1, 1, 1]
    assert [(r.converted_sites, r.last_site, r.accuracy, r.loss_points) for r in rows] == [
        (0, "-", None, None), (1, "first", None, None), (2, "second", None, None)
    ]  # fmt: skip
    ref = outputs[0].astype(np.float64).ravel()
    for row, out in zip(rows, outputs, strict=True):
        got = out.astype(np.float64).ravel()
        assert row.cosine == pytest.approx(ref @ got / np.linalg.norm(ref) / np.linalg.norm(got), abs=1e-9)
        assert row.agreement == pytest.approx(np.mean(out.argmax(1) == outputs[0].argmax(1)))
    assert rows[0].cosine == pytest.approx(1.0) and rows[2].cosine < rows[1].cosine < 1


@pytest.mark.parametrize("labelled", [True, False])
def test_with_activations_row_zero_converts_them_alone(setting, labelled):
    """A Tanh after the first MatMul: with --activations tanh it is converted in every row, row 0 too."""
    model, x, _ = setting
    tanh = _two_sites()
    tanh.graph.node[0].output[0] = "pre"
    tanh.graph.node.insert(1, helper.make_node("Tanh", ["pre"], ["s1"], name="act"))
    options = RewriteOptions(steps=8, activations=("tanh",))
    expected = [run(rewrite_model(tanh, RewriteOptions(steps=8, activations=("tanh",), first=n))[0], {"x": x})[0]
                for n in (0, 1, 2)]  # fmt: skip
    original = run(tanh, {"x": x})[0]
    labels = original.argmax(1) if labelled else None
    rows = layer_sweep(tanh, options, LabelledData({"x": x}, labels, "mem"))
    assert [r.last_site for r in rows] == ["- (activations only)", "first", "second"]
    assert [r.converted_sites for r in rows] == [0, 1, 2]
    for row, out in zip(rows, expected, strict=True):
        assert row.agreement == pytest.approx(np.mean(out.argmax(1) == original.argmax(1)))
        if not labelled:  # row 0 converts the activations and no softmax site
            a, b = out.astype(np.float64).ravel(), original.astype(np.float64).ravel()
            assert row.cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-7)
    assert rows[0].agreement < 1  # the converted Tanh alone already moves predictions


def test_labels_the_first_output_cannot_predict_are_refused_naming_the_data(setting):
    """1-based labels (1..4 for 4 classes) would score every row as a miss in silence."""
    model, x, outputs = setting
    labels = outputs[0].argmax(1) + 1
    with pytest.raises(SitOnnxError) as error:
        layer_sweep(model, OPTIONS, LabelledData({"x": x}, labels, "digits.npz"))
    assert str(error.value) == (
        f"digits.npz: 'labels' run from {labels.min()} to 4, but the model's first output has 4 classes (0..3)"
    )


@pytest.mark.parametrize("labelled", [True, False])
def test_every_session_is_made_as_asked(setting, monkeypatch, labelled):
    """The provider and library asked for reach the original's session and each converted one's."""
    model, x, outputs = setting
    spec = SessionSpec(provider="cpu", threads=1, verify_kernels=False)
    specs = record_session_specs(monkeypatch, layers)
    labels = outputs[0].argmax(1) if labelled else None
    rows = layer_sweep(model, OPTIONS, LabelledData({"x": x}, labels, "mem"), spec)
    assert len(rows) == 3 and specs == [spec] * (3 if labelled else 4)  # label-free runs the original twice


def test_the_options_choose_the_sites_swept(setting):
    """--nodes second: one site converted, so two rows, the second converting 'second' alone."""
    model, x, outputs = setting
    options = RewriteOptions(steps=4, nodes=("second",))
    rows = layer_sweep(model, options, LabelledData({"x": x}, None, "mem"))
    assert [(r.converted_sites, r.last_site) for r in rows] == [(0, "-"), (1, "second")]
    alone = run(rewrite_model(model, options)[0], {"x": x})[0].astype(np.float64).ravel()
    ref = outputs[0].astype(np.float64).ravel()
    assert rows[1].cosine == pytest.approx(ref @ alone / np.linalg.norm(ref) / np.linalg.norm(alone), abs=1e-9)


@pytest.mark.parametrize("labelled", [True, False])
def test_data_the_model_cannot_take_is_refused_naming_the_data(setting, labelled):
    model, _, _ = setting
    x = np.zeros((3, 5), np.float32)
    labels = np.zeros(3, np.int64) if labelled else None
    with pytest.raises(SitOnnxError) as error:
        layer_sweep(model, OPTIONS, LabelledData({"x": x}, labels, "short.npz"))
    assert str(error.value) == "short.npz: 'x' has shape [3, 5], the model wants ['n', 6] (axis 1)"
