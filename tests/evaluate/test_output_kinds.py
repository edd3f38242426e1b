"""Outputs that are not a batch of tensors: a scalar (a sum over the batch), a sequence of like
tensors, a sequence of tensors of different shapes. eval and layers died joining a scalar over the
batches ("zero-dimensional arrays cannot be concatenated"), compare on any sequence ("'list' object
has no attribute 'shape'"), run on a ragged one. A sequence of like tensors is judged stacked; a
ragged one is summarised by run and refused by the commands that compare."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.batching import join_batches
from sit_onnx.evaluate.compare import check_comparable
from sit_onnx.runtime.session import _stacked
from tests.evaluate.test_commands import one_line_error

ROWS = 6


def _model(kind: str) -> onnx.ModelProto:
    """softmax(x) over x [n, 4], then the output of `kind`."""
    tail = {
        "scalar": [helper.make_node("ReduceSum", ["p"], ["y"], keepdims=0)],
        "like": [helper.make_node("SequenceConstruct", ["p", "p"], ["y"])],
        "ragged": [
            helper.make_node("Slice", ["p", "zero", "one", "one"], ["q"]),
            helper.make_node("SequenceConstruct", ["p", "q"], ["y"]),
        ],
        "maps": [helper.make_node("ZipMap", ["p"], ["y"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2, 3])],
        "labels": [helper.make_node("ArgMax", ["p"], ["y"], axis=1, keepdims=0)],
    }[kind]
    scores = helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    out = {
        "scalar": helper.make_tensor_value_info("y", TensorProto.FLOAT, []),
        "maps": helper.make_value_info("y", helper.make_sequence_type_proto(scores)),
        "labels": helper.make_tensor_value_info("y", TensorProto.INT64, ["n"]),
    }.get(kind) or helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, None)
    weights = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("zero", 0), ("one", 1))]
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=-1), *tail]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph(nodes, kind, [x], [out], weights if kind == "ragged" else [])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=opsets)


@pytest.fixture
def files(tmp_path):
    paths = {"data": tmp_path / "data.npz"}
    np.savez(paths["data"], x=np.random.default_rng(0).normal(size=(ROWS, 4)).astype(np.float32))
    for kind in ("scalar", "like", "ragged", "maps", "labels"):
        paths[kind] = tmp_path / f"{kind}.onnx"
        onnx.save(_model(kind), paths[kind])
        paths[kind + ".sit"] = tmp_path / f"{kind}.sit.onnx"
        assert _invoke("rewrite", paths[kind], "-o", paths[kind + ".sit"]).exit_code == 0
    return paths


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("batch", ["256", "2"])
def test_a_scalar_output_is_judged_by_eval_and_layers(files, batch):
    result = _invoke("eval", files["scalar"], "--data", files["data"], "--batch", batch, "--json")
    assert result.exit_code == 0, result.output
    (output,) = json.loads(result.output)["outputs"]
    assert output["name"] == "y" and output["shape"] == [] and output["cosine"] > 0.999
    assert _invoke("layers", files["scalar"], "--data", files["data"]).exit_code == 0


def test_a_sequence_of_like_tensors_is_compared_stacked(files):
    result = _invoke("compare", files["like"], files["like.sit"], "--inputs", files["data"])
    assert result.exit_code == 0, result.output
    assert f"[y] shape [2, {ROWS}, 4]" in result.output and "PASSED" in result.output.splitlines()[-1]
    evaluated = _invoke("eval", files["like"], "--data", files["data"])
    assert evaluated.exit_code == 0 and "[y] argmax agreement 100.00%" in evaluated.output, evaluated.output


@pytest.mark.parametrize("command", ["compare", "eval", "layers"])
def test_a_ragged_sequence_is_refused_by_what_compares(files, command):
    args = [files["ragged.sit"], "--inputs"] if command == "compare" else ["--data"]
    result = _invoke(command, files["ragged"], *args, files["data"])
    label = str(files["ragged"]) if command == "compare" else "the model"
    said = f"{label}: its output 'y' is a sequence of tensors of different shapes, which is not compared"
    one_line_error(result, said)


def test_run_summarises_a_ragged_sequence_over_all_its_elements(files):
    result = _invoke("run", files["ragged.sit"], "--inputs", files["data"], "--json")
    assert result.exit_code == 0, result.output
    (output,) = json.loads(result.output)["outputs"]
    assert output["name"] == "y" and output["shape"] == [2] and output["dtype"] == "seq(float32)"
    assert 0 < output["min"] <= output["max"] < 1 and output["nan"] == 0


def test_run_summarises_a_sequence_of_maps_without_figures(files):
    result = _invoke("run", files["maps.sit"], "--inputs", files["data"], "--json")
    assert result.exit_code == 0, result.output
    (output,) = json.loads(result.output)["outputs"]
    assert output["name"] == "y" and output["shape"] == [ROWS] and output["dtype"] == "seq(dict)"
    assert output["min"] is None and output["max"] is None and output["mean"] is None


@pytest.mark.parametrize("command", ["compare", "eval"])
def test_a_sequence_of_maps_is_refused_by_what_compares(files, command):
    args = [files["maps.sit"], "--inputs"] if command == "compare" else ["--data"]
    label = str(files["maps"]) if command == "compare" else "the model"
    said = f"{label}: its output 'y' is a sequence of dict items, which is not compared"
    one_line_error(_invoke(command, files["maps"], *args, files["data"]), said)


def test_a_one_dimensional_output_is_joined_over_every_batch(files):
    """(batch,) labels from an ArgMax, two rows at a time: every batch's rows, not the first's."""
    result = _invoke("eval", files["labels"], "--data", files["data"], "--batch", "2", "--json")
    assert result.exit_code == 0, result.output
    (output,) = json.loads(result.output)["outputs"]
    assert output["shape"] == [ROWS]


def test_check_comparable_names_what_it_cannot_judge():
    check_comparable({"t": np.zeros(2)}, "m")
    for value, what in (
        ([], "nothing"),
        ([np.zeros(1), {1: 0.5}], "dict items"),
        ([np.zeros(1), np.zeros(2)], "tensors"),
    ):
        with pytest.raises(SitOnnxError, match=rf"^m: its output 'o' is a sequence of {what}"):
            check_comparable({"o": value}, "m")


def test_stacking_only_like_tensors():
    a, b = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    stacked = _stacked([a, b])
    assert stacked.shape == (2, 2, 3) and (stacked[0] == 0).all() and (stacked[1] == 1).all()
    for kept in ([a, b[:, :1]], [a, b.astype(np.float64)], [], [{1: 0.5}], [a, {1: 0.5}], a, (a, b)):
        assert _stacked(kept) is kept


def test_joining_batches_keeps_rows_and_takes_the_rest_from_the_first():
    parts = [(2, [np.zeros((2, 3)), np.float32(1.0), [1]]), (1, [np.ones((1, 3)), np.float32(2.0), [2]])]
    joined = join_batches(["rows", "scalar", "list"], parts)
    assert joined["rows"].shape == (3, 3) and joined["rows"][2, 0] == 1
    assert joined["scalar"] == 1.0 and joined["list"] == [1]


@pytest.mark.parametrize("command", ["eval", "layers"])
def test_accuracy_on_a_ragged_first_output_says_what_it_needs(files, tmp_path, command):
    """With labels, accuracy reads the first output: a ragged sequence had no 'ndim' (internal error)."""
    labelled = tmp_path / "labelled.npz"
    np.savez(labelled, x=np.load(files["data"])["x"], labels=np.zeros(ROWS, np.int64))
    said = "the model's first output is a sequence; accuracy needs (batch, classes) logits or (batch,) integer labels"
    one_line_error(_invoke(command, files["ragged"], "--data", labelled), said)
