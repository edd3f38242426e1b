"""A model input declared as a scalar (shape [], as a temperature or a step count is exported) is
one 0-d array in the data file, fed whole with every batch, as an input of fixed shape is. The data
commands refused it ("'s' is a single value (0-d), not rows of data") while run and compare took it;
a model whose only inputs are scalars has no rows to measure on and is refused saying so (it ended
in internal errors once scalars were taken). An input no array can give (a sequence) is named as such."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.datasets import fed_whole, load_labelled
from sit_onnx.evaluate.experiment import fixed_inputs
from tests.evaluate.test_commands import one_line_error

ROWS = 20


def _scaled_softmax(rows_input: bool = True) -> onnx.ModelProto:
    """softmax(x * s) with x [n, 3] and s a scalar; without x, softmax(s * [1, 2, 3])."""
    inputs = [helper.make_tensor_value_info("s", TensorProto.FLOAT, [])]
    if rows_input:
        inputs.insert(0, helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]))
    weights = [] if rows_input else [helper.make_tensor("x", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])]
    nodes = [helper.make_node("Mul", ["x", "s"], ["l"]), helper.make_node("Softmax", ["l"], ["y"], axis=-1)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3] if rows_input else [3])
    graph = helper.make_graph(nodes, "scaled", inputs, [out], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fixed_inputs_name_scalars_apart_from_unknown_ranks():
    model = _scaled_softmax()
    model.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, [1]))
    model.graph.input.append(helper.make_tensor_value_info("any", TensorProto.FLOAT, None))  # no shape: rank unknown
    assert fixed_inputs(model) == {"s": None, "flag": 1}


def test_a_scalar_is_fed_whole_only_as_a_0d_array():
    whole = {"s": None, "flag": 1}
    arrays = {"s": np.float32(2.0) * np.ones(()), "flag": np.ones(1, bool), "x": np.ones((1, 3))}
    assert fed_whole(arrays, whole) == {"s", "flag"}
    assert fed_whole({"s": np.ones(1), "flag": np.ones(())}, whole) == set()  # each the other's form
    assert fed_whole({"f": np.ones((1, 3)), "g": np.ones((2, 3))}, {"f": 1, "g": 1}) == {"f"}  # by the first dim


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3)).astype(np.float32)
    paths = {"model": tmp_path / "scaled.onnx", "scalars": tmp_path / "scalars.onnx"}
    onnx.save(_scaled_softmax(), paths["model"])
    onnx.save(_scaled_softmax(rows_input=False), paths["scalars"])
    for name, scale in (("data", 2.0), ("data1", 1.0)):
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], x=x, s=np.array(scale, np.float32), labels=np.argmax(x, axis=1))
    paths["only"] = tmp_path / "only.npz"
    np.savez(paths["only"], s=np.array(0.7, np.float32))
    return {k: str(v) for k, v in paths.items()}


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", ["eval", "energy", "calibrate", "layers"])
def test_data_commands_take_a_scalar_beside_rows(files, command):
    result = _invoke(command, files["model"], "--data", files["data"])
    assert result.exit_code == 0, result.output
    if command == "eval":
        assert "agreement          100.00%" in result.output


def test_the_scalar_reaches_the_model_with_every_batch(files):
    """calibrate reports the logits' largest value: x * 2 against x * 1, on every row."""
    largest = {}
    for name in ("data", "data1"):
        result = _invoke("calibrate", files["model"], "--data", files[name], "--json")
        assert result.exit_code == 0, result.output
        (site,) = json.loads(result.output)["sites"]
        largest[name] = site["max"]
    assert largest["data"] == pytest.approx(2 * largest["data1"], rel=1e-6)


def test_rewrite_calibrates_on_a_file_with_a_scalar(files, tmp_path):
    out = tmp_path / "cal.onnx"
    result = _invoke("rewrite", files["model"], "-o", out, "--calibrate", files["data"])
    assert result.exit_code == 0, result.output
    assert "1 of 1 softmax sites converted" in result.output and out.exists()


@pytest.mark.parametrize("command", ["eval", "energy", "calibrate", "layers"])
def test_a_model_of_scalars_alone_has_no_rows_and_says_so(files, command):
    result = _invoke(command, files["scalars"], "--data", files["only"])
    one_line_error(
        result,
        "only.npz: has no rows of data: the arrays the model takes (s) are single values (0-d); "
        "run --inputs and compare --inputs take them",
    )


def test_run_and_compare_take_such_a_model(files, tmp_path):
    converted = tmp_path / "scalars.sit.onnx"
    assert _invoke("rewrite", files["scalars"], "-o", converted).exit_code == 0
    assert _invoke("run", converted, "--inputs", files["only"]).exit_code == 0
    result = _invoke("compare", files["scalars"], converted, "--inputs", files["only"])
    assert result.exit_code == 0 and "PASSED" in result.output.splitlines()[-1]


def test_load_labelled_refuses_scalars_alone_but_not_a_file_of_other_arrays(files):
    with pytest.raises(SitOnnxError, match=r"has no rows of data"):
        load_labelled(files["only"], None, "s", require_labels=False, whole={"s": None}, inputs={"s"})
    # a scalar the model does not take is not fed, and not counted as data
    loaded = load_labelled(files["data"], None, "x", whole={}, inputs={"x"})
    assert loaded.labels.shape == (ROWS,)


def _sequence_model() -> onnx.ModelProto:
    """softmax(xs[0]) for a sequence of tensors xs: no .npz array can be a sequence."""
    xs = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, ["n", 3])
    nodes = [helper.make_node("SequenceAt", ["xs", "zero"], ["x"]), helper.make_node("Softmax", ["x"], ["y"], axis=-1)]
    zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    return helper.make_model(
        helper.make_graph(nodes, "seq", [xs], [out], [zero]), opset_imports=[helper.make_opsetid("", 17)]
    )


SEQUENCE_REFUSAL = "the model input 'xs' is a seq(tensor(float)); sit-onnx feeds a model tensors only, one array each"


@pytest.mark.parametrize("command", ["eval", "energy", "calibrate", "layers", "run", "compare", "rewrite"])
def test_a_sequence_input_is_named_as_what_no_array_can_give(tmp_path, command):
    """ort reports a sequence input's shape as []: the refusal read "'xs' has shape [4, 3], the
    model wants rank 0 ([])", and generated inputs said "pass --inputs", which could not help."""
    source, converted, data = tmp_path / "seq.onnx", tmp_path / "seq.sit.onnx", tmp_path / "seq.npz"
    onnx.save(_sequence_model(), source)
    assert _invoke("rewrite", source, "-o", converted).exit_code == 0  # the rewrite itself needs no data
    np.savez(data, xs=np.ones((4, 3), np.float32), labels=np.zeros(4, np.int64))
    args = {
        "run": [converted, "--inputs", data],
        "compare": [source, converted, "--inputs", data],
        "rewrite": [source, "-o", tmp_path / "cal.onnx", "--calibrate", data],
    }.get(command, [source, "--data", data])
    one_line_error(_invoke(command, *args), f"seq.npz: {SEQUENCE_REFUSAL}")
    if command in ("run", "compare"):  # nothing given: nothing can be generated either
        generated = _invoke(command, *args[:-2])
        one_line_error(generated, "cannot generate input 'xs' of type seq(tensor(float)); sit-onnx feeds a model")
    assert not (tmp_path / "cal.onnx").exists()


def _optional_model() -> onnx.ModelProto:
    """softmax of an optional tensor's element: onnxruntime takes a plain tensor for it."""
    tensor = helper.make_tensor_type_proto(TensorProto.FLOAT, ["n", 3])
    xs = helper.make_value_info("xs", helper.make_optional_type_proto(tensor))
    nodes = [helper.make_node("OptionalGetElement", ["xs"], ["x"]), helper.make_node("Softmax", ["x"], ["y"], axis=-1)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    return helper.make_model(helper.make_graph(nodes, "opt", [xs], [out]), opset_imports=[helper.make_opsetid("", 18)])


def test_an_optional_tensor_input_is_fed_and_generated_as_its_tensor(tmp_path):
    source, converted, data = tmp_path / "opt.onnx", tmp_path / "opt.sit.onnx", tmp_path / "opt.npz"
    onnx.save(_optional_model(), source)
    assert _invoke("rewrite", source, "-o", converted).exit_code == 0
    x = np.random.default_rng(1).normal(size=(6, 3))  # float64: cast to the tensor's float
    np.savez(data, xs=x, labels=np.argmax(x, axis=1))
    generated = _invoke("compare", source, converted)  # generating it said "pass --inputs"
    assert generated.exit_code == 0 and "generated inputs: xs [4, 3] float32" in generated.output, generated.output
    result = _invoke("eval", source, "--data", data)
    assert result.exit_code == 0 and "agreement          100.00%" in result.output, result.output
    ints = tmp_path / "ints.npz"
    np.savez(ints, xs=np.ones((6, 3), np.int64))
    one_line_error(_invoke("run", converted, "--inputs", ints), "ints.npz: 'xs' is int64, the model wants float32")


def _labels_input_model() -> onnx.ModelProto:
    """softmax(x + labels): a model input named 'labels', as an export with its loss's targets has."""
    nodes = [
        helper.make_node("Cast", ["labels"], ["lf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "lf"], ["s"]),
        helper.make_node("Softmax", ["s"], ["y"], axis=-1),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, ["n", 4]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    return helper.make_model(
        helper.make_graph(nodes, "lab", inputs, [out]), opset_imports=[helper.make_opsetid("", 17)]
    )


@pytest.mark.parametrize("command", ["eval", "energy", "calibrate", "layers"])
def test_an_input_named_labels_is_fed_not_scored(tmp_path, command):
    """The file's 'labels' was taken for accuracy labels and refused ("must be a 1-D integer array")."""
    model, data = tmp_path / "lab.onnx", tmp_path / "lab.npz"
    onnx.save(_labels_input_model(), model)
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.normal(size=(6, 4)).astype(np.float32), labels=rng.integers(0, 2, (6, 4)))
    result = _invoke(command, model, "--data", data)
    assert result.exit_code == 0, result.output
    if command == "eval":  # no labels to score: the label-free figures
        assert "[y] argmax agreement" in result.output and "ANN accuracy" not in result.output
    loaded = load_labelled(data, None, "x", require_labels=False, inputs={"x", "labels"})
    assert loaded.labels is None and set(loaded.arrays) == {"x", "labels"}
    with pytest.raises(SitOnnxError, match=r"'labels' is an input of the model here, not the labels accuracy needs$"):
        load_labelled(data, None, "x", inputs={"x", "labels"})


def test_feed_rows_of_scalars_alone_is_zero(files):
    """No array with a first dim: no rows (the commands then refuse saying so), whatever is fed."""
    import onnxruntime as ort

    from sit_onnx.evaluate.batching import feed_rows

    session = ort.InferenceSession(files["scalars"], providers=["CPUExecutionProvider"])
    assert feed_rows(session, {"s": np.array(0.7, np.float32)}) == 0
    assert feed_rows(session, {}) == 0
    rows = ort.InferenceSession(files["model"], providers=["CPUExecutionProvider"])
    assert feed_rows(rows, {"s": np.array(0.7, np.float32), "x": np.ones((ROWS, 3), np.float32)}) == ROWS


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_unlabelled_rows_are_counted_past_a_table_fed_whole(tmp_path):
    """Without labels the rows are the first per-row array's: a table fed whole [4, 3] listed first
    neither sets the count nor ends the check of the arrays after it; the refusal names the file."""
    table, x = np.ones((4, 3), np.float32), np.ones((2, 5), np.float32)
    good = _npz(tmp_path, "good.npz", t=table, x=x, y=np.ones((2, 1), np.float32))
    loaded = load_labelled(good, None, "x", require_labels=False, whole={"t": 4}, inputs={"t", "x", "y"})
    assert loaded.labels is None and sorted(loaded.arrays) == ["t", "x", "y"] and loaded.source == str(good)
    bad = _npz(tmp_path, "bad.npz", t=table, x=x, y=np.ones((3, 1), np.float32))
    with pytest.raises(SitOnnxError) as refused:
        load_labelled(bad, None, "x", require_labels=False, whole={"t": 4}, inputs={"t", "x", "y"})
    assert str(refused.value) == f"{bad}: 'y' has 3 rows but the first array has 2"


def test_unlabelled_data_ignores_arrays_the_model_does_not_take(tmp_path):
    """A column of ids of another length beside the model's input: not fed, so not counted."""
    path = _npz(tmp_path, "ids.npz", x=np.ones((2, 5), np.float32), ids=np.arange(7))
    assert sorted(load_labelled(path, None, "x", require_labels=False, inputs={"x"}).arrays) == ["ids", "x"]


def test_scalars_alone_are_all_named(tmp_path):
    path = _npz(tmp_path, "two.npz", s=np.array(0.5, np.float32), t=np.array(2.0, np.float32))
    with pytest.raises(SitOnnxError) as refused:
        load_labelled(path, None, "s", require_labels=False, whole={"s": None, "t": None}, inputs={"s", "t"})
    assert str(refused.value) == (
        f"{path}: has no rows of data: the arrays the model takes (s, t) are single values (0-d); "
        "run --inputs and compare --inputs take them"
    )


def test_an_input_named_labels_is_checked_as_data_when_no_accuracy_is_measured(tmp_path):
    """calibrate, energy, layers: 'labels' is the model's input, checked for rows like the others,
    other arrays of the file left out of the count, and a refusal names the file."""
    x, ids = np.ones((3, 5), np.float32), np.arange(7)
    good = _npz(tmp_path, "good.npz", x=x, labels=np.zeros(3, np.int64), ids=ids)
    loaded = load_labelled(good, None, "x", require_labels=False, inputs={"x", "labels"})
    assert loaded.labels is None and sorted(loaded.arrays) == ["ids", "labels", "x"]
    bad = _npz(tmp_path, "bad.npz", x=x, labels=np.zeros(4, np.int64))
    with pytest.raises(SitOnnxError) as refused:
        load_labelled(bad, None, "x", require_labels=False, inputs={"x", "labels"})
    assert str(refused.value) == f"{bad}: 'labels' has 4 rows but the first array has 3"
