"""`sit-onnx eval` on data without labels, the common case for Transformers: a multi-input model with
integer token ids and a float mask; figures per output against the original, never an accuracy."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.evaluate.datasets import LabelledData
from sit_onnx.evaluate.experiment import evaluate_outputs, load_pair
from sit_onnx.graph.convert import RewriteOptions
from sit_onnx.runtime import SessionSpec


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    """ids (int64) -> embedding -> scores = e e^T + mask -> softmax -> context; outputs: logits over
    a 7-token vocabulary and the context itself."""
    rng = np.random.default_rng(0)
    table = rng.normal(0, 1.5, (7, 6)).astype(np.float32)
    head = rng.normal(0, 1, (6, 7)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["e"]),
            helper.make_node("Transpose", ["e"], ["et"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["e", "et"], ["s0"]),
            helper.make_node("Add", ["s0", "mask"], ["s"]),
            helper.make_node("Softmax", ["s"], ["p"], axis=-1, name="attention"),
            helper.make_node("MatMul", ["p", "e"], ["context"]),
            helper.make_node("MatMul", ["context", "head"], ["logits"]),
        ],
        "tokens",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", 5]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["b", 1, 5]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 5, 7]),
            helper.make_tensor_value_info("context", TensorProto.FLOAT, ["b", 5, 6]),
        ],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(head, "head")],
    )
    folder = tmp_path_factory.mktemp("tokens")
    path = folder / "tokens.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    ids = rng.integers(0, 7, (21, 5)).astype(np.int64)
    mask = np.zeros((21, 1, 5), np.float32)
    mask[::3, :, 4] = -1e4  # some rows pad their last token
    data = folder / "inputs.npz"
    np.savez(data, ids=ids, mask=mask)
    return path, data, {"ids": ids, "mask": mask}


def test_eval_without_labels_reports_every_output(token_model):
    path, data, _ = token_model
    record = json.loads(invoke("eval", path, "--data", data, "--steps", "12", "--batch", "4", "--json").output)
    assert record["labels"] is False and record["samples"] == 21 and "ann_accuracy" not in record
    outputs = {o["name"]: o for o in record["outputs"]}
    assert set(outputs) == {"logits", "context"} and outputs["logits"]["shape"] == [21, 5, 7]
    for o in outputs.values():
        assert 0.99 < o["cosine"] <= 1 and 0 < o["mean_abs"] <= o["max_abs"] and o["problem"] is None
        assert 0.9 <= o["agreement"] <= 1
    coarse = json.loads(invoke("eval", path, "--data", data, "--steps", "4", "--json").output)
    assert {o["name"]: o["max_abs"] for o in coarse["outputs"]}["logits"] > outputs["logits"]["max_abs"]
    text = invoke("eval", path, "--data", data)
    assert text.exit_code == 0 and "no labels" in text.output and "[logits] argmax agreement" in text.output


def test_batches_change_nothing(token_model):
    path, _, arrays = token_model
    pair = load_pair(path, None, RewriteOptions(steps=6))
    data = LabelledData(arrays, None, "t")
    spec = SessionSpec(verify_kernels=False)
    whole = evaluate_outputs(pair, data, spec, batch=100)
    ticks = []
    pieces = evaluate_outputs(pair, data, spec, batch=4, tick=ticks.append)
    assert ticks == [4, 4, 4, 4, 4, 1] * 2  # both models, every row once
    for a, b in zip(whole, pieces):
        assert a.name == b.name and a.max_abs == pytest.approx(b.max_abs) and a.cosine == pytest.approx(b.cosine)


def test_labelled_data_still_gives_accuracy(tmp_path):
    from pathlib import Path

    bundled = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"
    from sit_onnx.evaluate.datasets import digits_test

    x, y = digits_test()
    np.savez(tmp_path / "l.npz", input=x[:40], labels=y[:40])
    record = json.loads(invoke("eval", bundled, "--data", tmp_path / "l.npz", "--json").output)
    assert record["samples"] == 40 and 0.8 < record["ann_accuracy"] <= 1 and "outputs" not in record


def test_wrong_inputs_are_one_line(token_model, tmp_path):
    path, _, arrays = token_model
    np.savez(tmp_path / "bad.npz", ids=arrays["ids"].astype(np.float32), mask=arrays["mask"])
    result = invoke("eval", path, "--data", tmp_path / "bad.npz")
    assert result.exit_code == 1 and "Traceback" not in result.output and "ids" in result.output


def test_layers_without_labels_tracks_the_first_output(token_model):
    path, data, _ = token_model
    record = json.loads(invoke("layers", path, "--data", data, "--steps", "4", "--json").output)
    rows = record["rows"]
    assert [r["converted_sites"] for r in rows] == [0, 1] and rows[1]["last_site"] == "attention"
    assert rows[0]["cosine"] == pytest.approx(1.0) and rows[0]["agreement"] == 1.0
    assert 0.9 < rows[1]["cosine"] < 1.0 and rows[1]["accuracy"] is None and rows[1]["loss_points"] is None
    assert record["ann_accuracy"] is None
    text = invoke("layers", path, "--data", data, "--steps", "4")
    assert text.exit_code == 0 and "argmax agreement" in text.output and "attention" in text.output


def _map_model(path, shift: float, saliency_first: bool = False):
    """pixels N x 2 x 8 x 8 -> p = softmax(3 pixels) along each line (a site); classes = p + pixels
    + [0, shift] per channel (a two-class map of the image) and saliency = its sum over channels
    (a one-channel map)."""
    outputs = [
        helper.make_tensor_value_info("classes", TensorProto.FLOAT, ["n", 2, 8, 8]),
        helper.make_tensor_value_info("saliency", TensorProto.FLOAT, ["n", 1, 8, 8]),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["pixels", "three"], ["scaled"]),
            helper.make_node("Softmax", ["scaled"], ["p"], axis=-1, name="lines"),
            helper.make_node("Add", ["p", "pixels"], ["mixed"]),
            helper.make_node("Add", ["mixed", "shift"], ["classes"]),
            helper.make_node("ReduceSum", ["classes", "axes"], ["saliency"], keepdims=1),
        ],
        "maps",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 2, 8, 8])],
        outputs[::-1] if saliency_first else outputs,
        [
            numpy_helper.from_array(np.float32(3), "three"),
            numpy_helper.from_array(np.array([0, shift], np.float32).reshape(1, 2, 1, 1), "shift"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_eval_judges_an_image_map_per_pixel_and_a_one_channel_map_by_cosine(tmp_path):
    """As `compare` does: the two-class map's argmax is taken per pixel over its channels (a shift of
    channel 1 flips about half the pixels, though no line's own argmax moves), the saliency map's
    not at all (its lines are pixels, no decision)."""
    pixels = np.random.default_rng(3).normal(size=(5, 2, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "pixels.npz", pixels=pixels)
    original, shifted = _map_model(tmp_path / "a.onnx", 0.0), _map_model(tmp_path / "b.onnx", 0.5)
    args = ("eval", original, "--converted", shifted, "--data", tmp_path / "pixels.npz")
    record = json.loads(invoke(*args, "--json").output)
    outputs = {o["name"]: o for o in record["outputs"]}
    classes = pixels + np.exp(3 * pixels) / np.exp(3 * pixels).sum(-1, keepdims=True)
    expected = np.mean((classes[:, 1] > classes[:, 0]) == (classes[:, 1] + 0.5 > classes[:, 0]))
    assert outputs["classes"]["argmax_axis"] == -3 and outputs["classes"]["agreement"] == pytest.approx(expected)
    assert 0.5 < expected < 0.95  # the shift flips pixels, not lines
    assert outputs["saliency"]["argmax_axis"] is None and outputs["saliency"]["agreement"] is None
    assert outputs["saliency"]["cosine"] < 1.0 and outputs["classes"]["detections"] is None
    lines = invoke(*args).output.splitlines()
    assert any(line.startswith(f"[classes] argmax agreement per pixel {100 * expected:.2f}%, cosine") for line in lines)
    assert any(line.startswith("[saliency] cosine ") for line in lines)


@pytest.mark.parametrize("saliency_first", [True, False])
def test_layers_judges_a_map_as_first_output_as_compare_does(tmp_path, saliency_first):
    pixels = np.random.default_rng(4).normal(size=(3, 2, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "pixels.npz", pixels=pixels)
    model = _map_model(tmp_path / "m.onnx", 0.0, saliency_first)
    args = ("layers", model, "--data", tmp_path / "pixels.npz", "--steps", "6")
    rows = json.loads(invoke(*args, "--json").output)["rows"]
    assert [r["converted_sites"] for r in rows] == [0, 1] and rows[1]["cosine"] < 1.0
    text = invoke(*args).output
    if saliency_first:
        assert all(r["agreement"] is None and r["argmax_axis"] is None for r in rows)
        assert "argmax agreement" in text and "-" in text.splitlines()[-1].split()
    else:
        assert all(r["argmax_axis"] == -3 for r in rows) and rows[0]["agreement"] == 1.0
        assert 0.9 < rows[1]["agreement"] <= 1.0 and "argmax agreement per pixel" in text


def test_eval_judges_a_detector_by_its_detections(tmp_path):
    from tests.evaluate.test_detections import _detector, _raw

    objects = [(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)]
    reference = _detector(tmp_path / "a.onnx", _raw(objects))
    relabelled = _detector(tmp_path / "b.onnx", _raw([objects[0], (40, 40, 10, 10, 0, 0.8)]))
    np.savez(tmp_path / "images.npz", images=np.zeros((1, 3, 64, 64), np.float32))
    args = ("eval", reference, "--converted", relabelled, "--data", tmp_path / "images.npz")
    (output,) = json.loads(invoke(*args, "--json").output)["outputs"]
    assert output["agreement"] is None and output["argmax_axis"] is None
    assert output["detections"]["matched"] == 1 and output["detections"]["reference"] == 2
    text = invoke(*args).output
    assert "[output0] detections (score >= 0.25): reference 2, candidate 2, matched 1" in text
    assert "argmax" not in text


def test_eval_says_an_embeddings_argmax_decides_nothing(token_model, tmp_path):
    """As `compare` does: a hidden state's argmax agreement is shown, marked as no decision; the
    logits' line is not."""
    path, data, _ = token_model
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.input[:] = ["last_hidden_state" if name == "context" else name for name in node.input]
        node.output[:] = ["last_hidden_state" if name == "context" else name for name in node.output]
    model.graph.output[1].name = "last_hidden_state"
    onnx.save(model, str(tmp_path / "hidden.onnx"))
    lines = invoke("eval", tmp_path / "hidden.onnx", "--data", data).output.splitlines()
    hidden = next(line for line in lines if line.startswith("[last_hidden_state] "))
    logits = next(line for line in lines if line.startswith("[logits] "))
    assert "% (a cache, state or embedding: its argmax decides nothing), cosine " in hidden
    assert logits.startswith("[logits] argmax agreement ") and "decides nothing" not in logits


def test_a_detectors_output_of_another_shape_is_a_problem_not_detections(tmp_path):
    """Outputs that cannot be compared element by element are not decoded either: one line saying
    the shapes differ."""
    from tests.evaluate.test_detections import _detector, _raw

    objects = [(20, 20, 10, 10, 0, 0.9)]
    reference = _detector(tmp_path / "a.onnx", _raw(objects))
    fewer = _detector(tmp_path / "b.onnx", _raw(objects)[:, :, :80])
    np.savez(tmp_path / "images.npz", images=np.zeros((1, 3, 64, 64), np.float32))
    args = ("eval", reference, "--converted", fewer, "--data", tmp_path / "images.npz")
    (output,) = json.loads(invoke(*args, "--json").output)["outputs"]
    assert output["problem"].startswith("shapes differ: [1, 6, 84] vs [1, 6, 80]") and output["detections"] is None
    assert invoke(*args).output.splitlines()[1:] == [f"[output0] {output['problem']}"]


def test_an_integer_output_named_like_an_embedding_is_still_judged_by_its_values(tmp_path):
    """Equal values of ids decide something whatever the output is called: no "decides nothing"."""
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["feature_ids"], axis=-1, keepdims=0)],
        "ids",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("feature_ids", TensorProto.INT64, ["n"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "ids.onnx"))
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(5).normal(size=(6, 4)).astype(np.float32))
    args = ("eval", tmp_path / "ids.onnx", "--converted", tmp_path / "ids.onnx", "--data", tmp_path / "x.npz")
    line = invoke(*args).output.splitlines()[1]
    assert line.startswith("[feature_ids] values the same 100.00%, cosine ") and "decides nothing" not in line
