"""Models exported with a fixed batch (torch.onnx.export without dynamic axes declares [1, ...]) run
on data of any number of rows, a batch of the model's size at a time: `eval`, `layers`, `calibrate`,
`energy` and `rewrite --calibrate` refused them before ("'x' has shape [8, 6], the model wants
[1, 6]"). The figures equal those of the same model with a dynamic batch."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.accuracy import predict
from sit_onnx.evaluate.batching import fixed_batch, run_all_rows, run_in_batches
from sit_onnx.runtime import SessionSpec, make_session
from tests.helpers import softmax_model

SPEC = SessionSpec(use_library=False, verify_kernels=False)


def _with_shape_output(batch):
    """softmax(x) over [batch, 6], plus Shape(x): an output without the batch's rows."""
    model = softmax_model([batch, 6], -1)
    model.graph.node.append(helper.make_node("Shape", ["x"], ["shape"]))
    model.graph.output.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [2]))
    return model


def _two_inputs(first, second):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=-1)],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [first, 5]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [second, 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_fixed_batch_is_the_declared_one_where_the_data_has_other_rows(rng):
    x = rng.normal(0, 1, (8, 6)).astype(np.float32)
    assert fixed_batch(make_session(softmax_model([1, 6], -1), SPEC), {"x": x}, 8) == 1
    assert fixed_batch(make_session(softmax_model([4, 6], -1), SPEC), {"x": x}, 8) == 4
    assert fixed_batch(make_session(softmax_model([4, 6], -1), SPEC), {"x": x[:4]}, 4) is None  # fed whole
    assert fixed_batch(make_session(softmax_model(["n", 6], -1), SPEC), {"x": x}, 8) is None
    a = rng.normal(0, 1, (4, 5)).astype(np.float32)
    assert fixed_batch(make_session(_two_inputs(1, "n"), SPEC), {"a": a, "b": a}, 4) == 1
    assert fixed_batch(make_session(_two_inputs(1, 1), SPEC), {"a": a, "b": a[:1]}, 4) == 1  # b fed whole
    with pytest.raises(SitOnnxError, match=r"^the model's inputs fix different batch sizes \(1, 2\)$"):
        fixed_batch(make_session(_two_inputs(1, 2), SPEC), {"a": a, "b": a}, 4)


def test_batches_take_the_models_size_and_the_last_is_padded_with_its_last_row(rng):
    x = rng.normal(0, 1, (7, 6)).astype(np.float32)
    seen = []

    def run(part):  # a per-row output, and two without the batch's rows (6 long; as long as a batch of 2)
        seen.append(part["x"].copy())
        return [part["x"] * 2, np.arange(6), np.array([5, 6])]

    session = make_session(softmax_model([4, 6], -1), SPEC)
    done = list(run_in_batches(session, {"x": x}, 7, 256, run))
    assert [count for count, _ in done] == [4, 3]
    np.testing.assert_array_equal(seen[0], x[:4])
    np.testing.assert_array_equal(seen[1], np.concatenate([x[4:], x[6:]]))  # x[6] twice
    np.testing.assert_array_equal(done[1][1][0], x[4:] * 2)  # the padding's row dropped
    np.testing.assert_array_equal(done[1][1][1], np.arange(6))  # no batch rows: as it came
    dynamic = make_session(softmax_model(["n", 6], -1), SPEC)
    done = list(run_in_batches(dynamic, {"x": x}, 7, 2, run))
    assert [count for count, _ in done] == [2, 2, 2, 1] and seen[-1].shape == (1, 6)  # no padding
    np.testing.assert_array_equal(done[-1][1][2], [5, 6])  # nor cutting


def _scaled_softmax(batch):
    """Softmax(x * flag / t): x [batch, 6], a flag of fixed shape [1] and a scalar t, both fed whole."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "flag"], ["xf"]),
            helper.make_node("Div", ["xf", "t"], ["s"]),
            helper.make_node("Softmax", ["s"], ["y"], axis=-1),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 6]),
            helper.make_tensor_value_info("flag", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("t", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 6])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_inputs_fed_whole_are_neither_cut_nor_padded(rng):
    x = rng.normal(0, 2, (7, 6)).astype(np.float32)
    arrays = {"x": x, "flag": np.ones(1, np.float32), "t": np.array(0.5, np.float32)}
    fixed, dynamic = make_session(_scaled_softmax(4), SPEC), make_session(_scaled_softmax("n"), SPEC)
    np.testing.assert_array_equal(predict(fixed, arrays, "d"), predict(dynamic, arrays, "d"))
    got = run_all_rows(fixed, arrays, "m")["y"]
    np.testing.assert_array_equal(got, run_all_rows(dynamic, arrays, "m")["y"])
    assert got.shape == (7, 6)


def test_fewer_rows_than_the_fixed_batch_run_once_padded(rng):
    x = rng.normal(0, 2, (3, 6)).astype(np.float32)
    got = run_all_rows(make_session(_with_shape_output(4), SPEC), {"x": x}, "m")
    np.testing.assert_array_equal(
        got["y"], run_all_rows(make_session(_with_shape_output("n"), SPEC), {"x": x}, "m")["y"]
    )
    np.testing.assert_array_equal(got["shape"], [4, 6])


def test_only_the_first_dim_may_differ_from_a_fixed_shape():
    from sit_onnx.evaluate.inputs import check_feeds

    session = make_session(softmax_model([1, 5], -1), SPEC)
    x = np.zeros((6, 6), np.float32)  # 6 rows and 6 columns: the columns are still wrong
    with pytest.raises(SitOnnxError, match=r"^d: 'x' has shape \[6, 6\], the model wants \[1, 5\] \(axis 1\)$"):
        check_feeds(session, {"x": x}, "d", rows=6)
    assert check_feeds(session, {"x": x[:, :5]}, "d", rows=6)["x"].shape == (6, 5)
    with pytest.raises(SitOnnxError, match=r"the model wants \[1, 5\] \(axis 0\)$"):
        check_feeds(session, {"x": x[:, :5]}, "d")  # without rows: as given, whole


@pytest.mark.parametrize("batch", [1, 3])
def test_predictions_and_outputs_equal_the_dynamic_models(rng, batch):
    x = rng.normal(0, 2, (10, 6)).astype(np.float32)
    fixed, dynamic = make_session(_with_shape_output(batch), SPEC), make_session(_with_shape_output("n"), SPEC)
    np.testing.assert_array_equal(predict(fixed, {"x": x}, "d", batch=4), predict(dynamic, {"x": x}, "d"))
    got, want = run_all_rows(fixed, {"x": x}, "m"), run_all_rows(dynamic, {"x": x}, "m")
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_array_equal(got["shape"], [batch, 6])  # the first batch's, not joined
    np.testing.assert_array_equal(want["shape"], [10, 6])


def _figures(args):
    result = CliRunner().invoke(main, [*map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_data_command_runs_a_batch_one_model_as_its_dynamic_twin(tmp_path, rng):
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.normal(0, 2, (9, 6)).astype(np.float32), labels=rng.integers(0, 6, 9))
    paths = {}
    weight = onnx.numpy_helper.from_array(rng.normal(0, 1, (6, 6)).astype(np.float32), "w")
    for name, batch in (("fixed", 1), ("dynamic", "n")):
        model = softmax_model([batch, 6], -1)  # x @ w -> Softmax: a layer for `energy` to count
        model.graph.node.insert(0, helper.make_node("MatMul", ["x", "w"], ["xw"]))
        model.graph.node[1].input[0] = "xw"
        model.graph.initializer.append(weight)
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(model, str(paths[name]))
    for command in (["eval"], ["layers"], ["calibrate"], ["energy"]):
        fixed, dynamic = (_figures([*command, paths[n], "--data", data]) for n in ("fixed", "dynamic"))
        assert fixed == {**dynamic, **{k: fixed[k] for k in ("model", "path") if k in fixed}}, command
        assert command != ["energy"] or fixed["layers"][0]["macs"] == 36  # per sample, not per batch of one
    outputs = {}
    for name, path in paths.items():
        out = tmp_path / f"{name}.sit.onnx"
        result = CliRunner().invoke(main, ["rewrite", str(path), "-o", str(out), "--calibrate", str(data), "--json"])
        assert result.exit_code == 0, result.output
        outputs[name] = json.loads(result.stdout)["calibration"]
    assert outputs["fixed"] == outputs["dynamic"]


@pytest.mark.parametrize("rows", [1, 3])
def test_a_failing_run_names_the_model_batched_or_not(rows):
    """Reshape to a shape fed with the data: [2, 4] cannot hold a row of 6, in one run or per batch."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "to"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6]),
            helper.make_tensor_value_info("to", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    session = make_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), SPEC)
    feeds = {"x": np.zeros((rows, 6), np.float32), "to": np.array([2, 4])}
    with pytest.raises(SitOnnxError, match=r"^reshaper: onnxruntime failed to run the model: "):
        run_all_rows(session, feeds, "reshaper")


def test_run_and_compare_take_an_inputs_file_of_any_rows(tmp_path, rng):
    """`run --inputs` (with --repeat) and `compare --inputs` (with --noise-floor) on a batch-one model
    and its converted form: the dynamic twin's outputs and figures."""
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=rng.normal(0, 2, (5, 6)).astype(np.float32))
    figures = {}
    for name, batch in (("fixed", 1), ("dynamic", "n")):
        source, converted = tmp_path / f"{name}.onnx", tmp_path / f"{name}.sit.onnx"
        onnx.save(softmax_model([batch, 6], -1), str(source))
        assert CliRunner().invoke(main, ["rewrite", str(source), "-o", str(converted)]).exit_code == 0
        ran = _figures(["run", converted, "--inputs", inputs, "--repeat", "2"])
        compared = _figures(["compare", source, converted, "--inputs", inputs, "--noise-floor"])
        assert compared["passed"] and ran["outputs"][0]["shape"] == [5, 6]
        figures[name] = (ran["outputs"], compared["outputs"])
    assert figures["fixed"] == figures["dynamic"]
