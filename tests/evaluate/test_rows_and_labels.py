"""Data files that cannot be measured on: no rows at all (eval reported 0.00% accuracy, energy died
of a ZeroDivisionError), and labels the model's first output cannot predict (1-based labels, another
model's: eval and layers scored 0% in silence). Each is one line naming the file."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.accuracy import check_labels
from tests.evaluate.test_commands import one_line_error
from tests.evaluate.test_input_kinds import _scaled_softmax

CLASSES = 3


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "scaled.onnx"
    onnx.save(_scaled_softmax(), path)
    return str(path)


def _data(tmp_path, rows: int = 20, shift: int = 0, labels: bool = True) -> str:
    x = np.random.default_rng(0).normal(size=(rows, CLASSES)).astype(np.float32)
    arrays = {"x": x, "s": np.array(1.5, np.float32)}
    if labels:
        arrays["labels"] = np.argmax(x, axis=1) + shift
    path = tmp_path / f"data_{rows}_{shift}_{labels}.npz"
    np.savez(path, **arrays)
    return str(path)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", ["eval", "energy", "calibrate", "layers"])
@pytest.mark.parametrize("labels", [True, False])
def test_a_file_of_no_rows_is_refused(model, tmp_path, command, labels):
    data = _data(tmp_path, rows=0, labels=labels)
    what = "'labels' has" if labels else "the first array has"
    one_line_error(_invoke(command, model, "--data", data), f"holds no rows of data ({what} 0)")


def test_one_row_is_data(model, tmp_path):
    result = _invoke("eval", model, "--data", _data(tmp_path, rows=1))
    assert result.exit_code == 0 and "ANN accuracy       100.00%" in result.output, result.output


@pytest.mark.parametrize("command", ["eval", "layers"])
@pytest.mark.parametrize(("shift", "low", "high"), [(1, 1, 3), (-3, -3, -1), (100, 100, 102)])
def test_labels_outside_the_outputs_classes_are_refused(model, tmp_path, command, shift, low, high):
    result = _invoke(command, model, "--data", _data(tmp_path, shift=shift))
    said = f"'labels' run from {low} to {high}, but the model's first output has 3 classes (0..2)"
    one_line_error(result, said)
    assert result.output.startswith(f"Error: {tmp_path}")  # the file named


def test_commands_that_read_no_labels_do_not_check_them(model, tmp_path):
    for command in ("energy", "calibrate"):
        assert _invoke(command, model, "--data", _data(tmp_path, shift=100)).exit_code == 0


def test_check_labels_edges():
    check_labels(np.array([0, 2]), 3, "f.npz")  # both ends inside
    for labels in ([0, 3], [-1, 2]):
        with pytest.raises(SitOnnxError, match=r"^f\.npz: 'labels' run from "):
            check_labels(np.array(labels), 3, "f.npz")


def _fixed_batch_model(path) -> str:
    """softmax over x [1, 4]: a batch fixed at 1, as torch.onnx.export without dynamic axes writes it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], "fixed", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize("command", ["run", "compare"])
def test_no_rows_for_a_fixed_batch_is_refused(tmp_path, command):
    """A batch at a time, no batch ran: an internal error ("need at least one array to concatenate")."""
    model = _fixed_batch_model(tmp_path / "fixed.onnx")
    data = tmp_path / "none.npz"
    np.savez(data, x=np.zeros((0, 4), np.float32))
    args = [model, "--inputs", data] if command == "run" else [model, model, "--inputs", data]
    one_line_error(_invoke(command, *args), "fixed.onnx: the data holds no rows, and the model's batch is fixed at 1")


def test_no_rows_for_a_dynamic_batch_run_as_an_empty_batch(model, tmp_path):
    result = _invoke("run", model, "--inputs", _data(tmp_path, rows=0))
    assert result.exit_code == 0 and "0x3" in result.output, result.output


def test_an_unused_single_value_in_the_file_is_left_alone(tmp_path):
    """energy samples the first rows of every array: a 0-d one it does not feed died of an IndexError."""
    model = _fixed_batch_model(tmp_path / "fixed.onnx")
    data = tmp_path / "extra.npz"
    np.savez(data, x=np.ones((3, 4), np.float32), note=np.array(3.0))
    for command in ("energy", "calibrate", "eval"):
        result = _invoke(command, model, "--data", data)
        assert result.exit_code == 0, (command, result.output)


def test_rows_are_counted_on_labels_even_when_every_input_is_fed_whole(tmp_path):
    """A fixed-batch model given exactly its one row: fed whole. With 0 labels it is no data; with
    no labels it is one row (calibrate and energy measure it)."""
    model = _fixed_batch_model(tmp_path / "fixed.onnx")
    empty, one = tmp_path / "empty.npz", tmp_path / "one.npz"
    np.savez(empty, x=np.ones((1, 4), np.float32), labels=np.zeros(0, np.int64))
    np.savez(one, x=np.ones((1, 4), np.float32))
    one_line_error(_invoke("eval", model, "--data", empty), "holds no rows of data ('labels' has 0)")
    for command in ("energy", "calibrate"):
        assert _invoke(command, model, "--data", one).exit_code == 0


def _table_model(path, rows, table_rows: int) -> str:
    """softmax(x @ t.T): x [rows, 3] by row, t [table_rows, 3] a table fed whole with every batch."""
    nodes = [
        helper.make_node("Transpose", ["t"], ["tt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "tt"], ["s"]),
        helper.make_node("Softmax", ["s"], ["y"], axis=-1),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, 3]),
        helper.make_tensor_value_info("t", TensorProto.FLOAT, [table_rows, 3]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, table_rows])
    onnx.save(
        helper.make_model(
            helper.make_graph(nodes, "table", inputs, [out]), opset_imports=[helper.make_opsetid("", 17)]
        ),
        path,
    )
    return str(path)


@pytest.mark.parametrize(
    ("rows", "declared", "table_rows"),
    [(2, "n", 4), (2, "n", 2), (1, 1, 4), (5, 1, 4)],  # a longer table; as long as the data; a fixed batch
)
def test_a_table_fed_whole_is_never_cut_into_batches(tmp_path, rows, declared, table_rows):
    """The rows were counted on the longest array: a table [4, 3] beside 2 rows was taken for the data
    and cut a row at a time ("Got invalid dimensions for input: t"); one as long as the data was cut too."""
    from sit_onnx.evaluate.batching import feed_rows

    model = _table_model(tmp_path / "table.onnx", declared, table_rows)
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(rows, 3)).astype(np.float32), rng.normal(size=(table_rows, 3)).astype(np.float32)
    data = tmp_path / "table.npz"
    np.savez(data, x=x, t=t, labels=np.argmax(x @ t.T, axis=1))
    for batch in ("1", "256"):
        result = _invoke("eval", model, "--data", data, "--batch", batch)
        assert result.exit_code == 0 and "ANN accuracy       100.00%" in result.output, result.output
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert feed_rows(session, {"x": x, "t": t}) == rows
