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
