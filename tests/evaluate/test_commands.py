"""The evaluation commands on the bundled model and on tiny inline graphs, good and bad input."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from tests.helpers import attention_classifier, softmax_model

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"
pytest.importorskip("sklearn", reason="the digits data set comes from scikit-learn")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def one_line_error(result, text):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and text in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny 'attention classifier': logits = softmax(x @ w) @ v, with data and labels it gets right."""
    model, x, labels = attention_classifier(np.random.default_rng(0), 200)
    folder = tmp_path_factory.mktemp("tiny")
    onnx.save(model, str(folder / "tiny.onnx"))
    np.savez(folder / "data.npz", x=x, labels=labels)
    return folder


def test_eval_on_tiny_graph(classifier):
    record = ok_json(invoke("eval", classifier / "tiny.onnx", "--data", classifier / "data.npz", "--json"))
    assert record["ann_accuracy"] == 1.0 and record["samples"] == 200
    assert record["converted_accuracy"] > 0.95 and record["loss_points"] == pytest.approx(
        100 * (record["ann_accuracy"] - record["converted_accuracy"])
    )


def test_eval_bundled_model_on_digits():
    record = ok_json(invoke("eval", BUNDLED, "--dataset", "digits", "--json"))
    assert record["samples"] == 360 and record["ann_accuracy"] > 0.9
    assert abs(record["loss_points"]) <= 0.6 and record["agreement"] > 0.99


def test_eval_with_converted_file(classifier, tmp_path):
    converted = tmp_path / "c.onnx"
    assert invoke("rewrite", classifier / "tiny.onnx", "-o", converted).exit_code == 0
    record = ok_json(
        invoke("eval", classifier / "tiny.onnx", "--converted", converted, "--data", classifier / "data.npz", "--json")
    )
    assert record["converted"] == str(converted) and record["converted_accuracy"] > 0.95


@pytest.mark.parametrize("command", ["eval", "energy"])
@pytest.mark.parametrize(
    "flags, named",
    [
        (["-k", "4"], "-k/--steps"),
        (["--no-shift"], "--shift/--no-shift"),
        (["--chain"], "--fuse/--chain"),
        (["--activations", "gelu"], "--activations"),
        (["--time-steps", "0"], "--time-steps"),  # the default, given: still a flag for the conversion
    ],
)
def test_conversion_flags_beside_a_converted_model_are_refused(classifier, tmp_path, command, flags, named):
    """--converted is used as it is: the conversion flags beside it were silently unused."""
    converted = tmp_path / "c.onnx"
    assert invoke("rewrite", classifier / "tiny.onnx", "-o", converted).exit_code == 0
    result = invoke(
        command, classifier / "tiny.onnx", "--converted", converted, "--data", classifier / "data.npz", *flags
    )
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1] == (
        f"Error: {named} converts MODEL; --converted gives a model converted already"
    )


def test_eval_reads_past_arrays_the_model_does_not_take(classifier, tmp_path):
    data = np.load(classifier / "data.npz")
    extra = tmp_path / "extra.npz"
    np.savez(extra, x=data["x"], labels=data["labels"], ids=np.arange(7), text=np.array(["a", "b"]))
    record = ok_json(invoke("eval", classifier / "tiny.onnx", "--data", extra, "--json"))
    assert record["samples"] == 200 and record["ann_accuracy"] == 1.0
    renamed = tmp_path / "renamed.npz"
    np.savez(renamed, input=data["x"], labels=data["labels"])
    one_line_error(invoke("eval", classifier / "tiny.onnx", "--data", renamed), "lacks the model input 'x' (has input)")


def test_eval_batch_reaches_labelled_runs(tmp_path, rng):
    """A softmax over the batch axis: its argmax depends on the rows run together, so --batch 1 (each
    row alone: every weight 1, argmax 0) shows that the labelled runs take the flag too."""
    model = tmp_path / "batchwise.onnx"
    onnx.save(softmax_model(["b", 4], 0), str(model))
    data = tmp_path / "d.npz"
    labels = np.arange(40) % 4
    np.savez(data, x=np.eye(4, dtype=np.float32)[labels] * 5, labels=labels)
    alone = ok_json(invoke("eval", model, "--data", data, "--batch", "1", "--json"))
    together = ok_json(invoke("eval", model, "--data", data, "--json"))
    assert alone["ann_accuracy"] == 0.25 and together["ann_accuracy"] == 1.0
    assert alone["converted_accuracy"] == 0.25 and together["converted_accuracy"] == 1.0  # both models batched


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"y": np.zeros((4, 6), np.float32), "labels": np.zeros(4, np.int64)}, "lacks the model input 'x'"),
        ({"x": np.zeros((4, 7), np.float32), "labels": np.zeros(4, np.int64)}, "wants ['n', 6]"),
        ({"x": np.zeros((4, 6), np.int32), "labels": np.zeros(4, np.int64)}, "is int32"),
        ({"x": np.zeros((4, 6), np.float32), "labels": np.zeros(4, np.float32)}, "1-D integer array"),
        ({"x": np.zeros((4, 6), np.float32), "labels": np.zeros(5, np.int64)}, "has 4 rows but 'labels' has 5"),
    ],
)
def test_eval_bad_data(classifier, tmp_path, arrays, message):
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    one_line_error(invoke("eval", classifier / "tiny.onnx", "--data", data), message)


def test_eval_needs_exactly_one_data_source(classifier):
    one_line_error(invoke("eval", classifier / "tiny.onnx"), "exactly one of --data")


def test_model_without_softmax_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3), np.float32), labels=np.zeros(2, np.int64))
    one_line_error(invoke("eval", path, "--data", data), "no Softmax")
    one_line_error(invoke("calibrate", path, "--data", data), "no Softmax")


def test_layers_table(classifier):
    record = ok_json(invoke("layers", classifier / "tiny.onnx", "--data", classifier / "data.npz", "--json"))
    assert [r["converted_sites"] for r in record["rows"]] == [0, 1]
    assert record["rows"][0]["loss_points"] == 0 and record["rows"][1]["last_site"] == "att"


def test_layers_on_bundled_vit():
    record = ok_json(invoke("layers", BUNDLED, "--dataset", "digits", "--json"))
    assert len(record["rows"]) == 3 and record["rows"][0]["agreement"] == 1.0


def test_calibrate_reports_ranges(classifier):
    record = ok_json(invoke("calibrate", classifier / "tiny.onnx", "--data", classifier / "data.npz", "--json"))
    (site,) = record["sites"]
    assert site["name"] == "att" and site["min"] <= site["p50"] <= site["max"]
    data = np.load(classifier / "data.npz")
    w = numpy_helper.to_array(onnx.load(str(classifier / "tiny.onnx")).graph.initializer[0])
    logits = data["x"] @ w
    shifted = logits - logits.max(axis=1, keepdims=True)
    assert site["inside_shift_range"] == pytest.approx(np.mean(shifted >= -12))
    assert site["inside_paper_range"] == pytest.approx(np.mean(np.abs(logits) <= 1))
    assert "--shift" in site["recommendation"] or "paper mode" in site["recommendation"]
    if "--shift" in site["recommendation"]:
        assert "rewrite --calibrate" in site["recommendation"]


def test_energy_counts_macs(classifier):
    record = ok_json(invoke("energy", classifier / "tiny.onnx", "--data", classifier / "data.npz", "--json"))
    macs = {layer["name"] or layer["op"]: layer["macs"] for layer in record["layers"]}
    assert sorted(macs.values()) == [15, 30]  # 6x5 and 5x3 per sample
    event_driven = [layer for layer in record["layers"] if layer["spike_rate"] is not None]
    assert len(event_driven) == 1 and event_driven[0]["converted_pj"] < event_driven[0]["ann_pj"]
    assert record["ann_pj"] == pytest.approx(45 * 4.6)
    assert "memory traffic" in record["caveat"]


def test_compare_passes_and_fails(classifier, tmp_path):
    converted = tmp_path / "c.onnx"
    invoke("rewrite", classifier / "tiny.onnx", "-o", converted)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.random.default_rng(1).normal(size=(8, 6)).astype(np.float32))
    record = ok_json(
        invoke("compare", classifier / "tiny.onnx", converted, "--inputs", inputs, "--atol", "0.1", "--json")
    )
    (out,) = record["outputs"]
    assert record["passed"] and 0 < out["max_abs"] < 0.1 and out["min_atol_to_pass"] == pytest.approx(out["max_abs"])
    assert out["cosine"] > 0.99
    strict = invoke("compare", classifier / "tiny.onnx", converted, "--inputs", inputs, "--atol", "1e-9")
    assert strict.exit_code == 1 and strict.output.strip().splitlines()[-1].startswith("FAILED")
    assert "minimum atol that would pass" in strict.output


def test_demo_runs_end_to_end(tmp_path):
    result = invoke("demo", "--output-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "ANN" in result.output and "converted model:" in result.output
    onnx.checker.check_model(str(tmp_path / "vit_digits.sit.onnx"), full_check=True)


def test_calibrate_sees_every_site_the_rewrite_sees(rng):
    """The same site finder: a hand-written softmax and the softmax inside an ONNX Attention op."""
    from onnx import TensorProto, helper

    from sit_onnx.evaluate.calibrate import calibrate

    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, 3, 4])
    nodes = [
        helper.make_node("Attention", ["q", "q", "q"], ["a"], name="att"),
        helper.make_node("Exp", ["a"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
        helper.make_node("Div", ["e", "s"], ["y"]),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    graph = helper.make_graph(
        nodes, "g", [q], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 4])], [axes]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    x = rng.normal(0, 2, (1, 2, 3, 4)).astype(np.float32)
    sites = calibrate(model, {"q": x})
    assert len(sites) == 2 and sites[1].name == "exp"
    assert sites[0].count == 1 * 2 * 3 * 3 and sites[1].count == x.size  # the attention scores, then a
    scores = x @ np.swapaxes(x, -1, -2) / 2.0  # Attention's default scale 1/sqrt(head size 4)
    assert sites[0].max == pytest.approx(float(scores.max()), rel=1e-5)
    assert sites[0].min == pytest.approx(float(scores.min()), rel=1e-5)


def test_shipped_digits_test_split_is_scikit_learns(monkeypatch):
    """The demo's data ships with the package (no scikit-learn needed) and is exactly the split
    the models were trained and measured with."""
    from sit_onnx.evaluate.datasets import digits_split, digits_test, load_labelled

    images, labels = digits_test()
    _, x_test, _, y_test = digits_split()
    np.testing.assert_array_equal(images, x_test)
    np.testing.assert_array_equal(labels, y_test)
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # as after a plain `pip install sit-onnx`
    data = load_labelled(None, "digits", "images")
    assert data.arrays["images"].shape == (360, 1, 8, 8) and data.labels.dtype == np.int64


def _token_model(path):
    """Two integer inputs (input_ids, attention_mask), an embedding and a masked softmax: a text
    encoder's shape of inputs."""
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32), "table")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
        helper.make_node("Transpose", ["emb"], ["emb_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["emb", "emb_t"], ["scores"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "maskf"], ["inv"]),
        helper.make_node("Mul", ["inv", "big"], ["bias"]),
        helper.make_node("Unsqueeze", ["bias", "ax1"], ["bias3"]),
        helper.make_node("Sub", ["scores", "bias3"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["y"], name="attn", axis=-1),
    ]
    extra = [
        numpy_helper.from_array(np.float32(1.0), "one"),
        numpy_helper.from_array(np.float32(1e4), "big"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", 5]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 5, 5])],
        [table, *extra],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_calibrate_and_energy_take_unlabelled_multi_input_integer_data(tmp_path):
    model = tmp_path / "tokens.onnx"
    _token_model(model)
    data = tmp_path / "tokens.npz"
    rng = np.random.default_rng(1)
    mask = np.ones((6, 5), np.int64)
    mask[2:, 3:] = 0
    np.savez(data, input_ids=rng.integers(0, 20, (6, 5)), attention_mask=mask)  # no labels
    record = ok_json(invoke("calibrate", model, "--data", data, "--json"))
    assert record["samples"] == 6 and [s["name"] for s in record["sites"]] == ["attn"]
    assert record["sites"][0]["count"] == 6 * 5 * 5
    energy = ok_json(invoke("energy", model, "--data", data, "--samples", "4", "--json"))
    assert energy["samples"] == 4 and energy["ann_pj"] > 0
    unlabelled = ok_json(invoke("eval", model, "--data", data, "--json"))  # no accuracy: the label-free figures
    assert unlabelled["labels"] is False and unlabelled["samples"] == 6 and unlabelled["outputs"][0]["cosine"] > 0.99
    layers = ok_json(invoke("layers", model, "--data", data, "--json"))  # label-free: agreement and cosine
    assert [r["accuracy"] for r in layers["rows"]] == [None, None] and layers["rows"][0]["cosine"] == 1.0
    np.savez(data, input_ids=rng.integers(0, 20, (6, 5)), attention_mask=mask[:4])
    uneven = invoke("calibrate", model, "--data", data)
    assert uneven.exit_code == 1 and "'attention_mask' has 4 rows but the first array has 6" in uneven.output
