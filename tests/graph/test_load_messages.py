"""What `load` says about files that are not (whole) ONNX models, and feed checks' wording."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.inputs import check_feeds
from sit_onnx.graph.load import read_model_proto
from tests.helpers import softmax_model


def test_garbage_is_not_an_onnx_model_and_says_why(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(SitOnnxError) as raised:
        read_model_proto(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: not an ONNX model (the protobuf does not parse: ") and message.endswith(")")
    assert "None" not in message and len(message) > len(f"{path}: not an ONNX model (the protobuf does not parse: )")


def test_a_model_with_outputs_but_no_nodes_is_still_a_model(tmp_path):
    model = softmax_model([2, 3], -1)
    del model.graph.node[:]
    model.graph.output[0].name = "x"  # an identity graph: the input is the output
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert read_model_proto(path).graph.output[0].name == "x"
    path.write_bytes(b"")  # nothing at all
    with pytest.raises(SitOnnxError, match=r"not an ONNX model \(no graph; is the file truncated"):
        read_model_proto(path)


def test_feed_checks_say_what_is_there_and_convert_floats_only():
    session = ort.InferenceSession(softmax_model([2, 3], -1).SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(SitOnnxError, match=r"^src: lacks the model input 'x' \(has nothing\)$"):
        check_feeds(session, {}, "src")
    with pytest.raises(SitOnnxError, match=r"^src: lacks the model input 'x' \(has a, b\)$"):
        check_feeds(session, {"b": np.zeros(1), "a": np.zeros(1)}, "src")
    feeds = check_feeds(session, {"x": np.ones((2, 3), np.float16)}, "src")
    assert feeds["x"].dtype == np.float32 and feeds["x"].sum() == 6
    with pytest.raises(SitOnnxError, match=r"^src: 'x' is int64, the model wants float32$"):
        check_feeds(session, {"x": np.ones((2, 3), np.int64)}, "src")
    with pytest.raises(SitOnnxError, match=r"^src: 'x' has shape \[2, 4\], the model wants \[2, 3\] \(axis 1\)$"):
        check_feeds(session, {"x": np.ones((2, 4), np.float32)}, "src")


def test_the_newest_opset_onnx_knows_loads_and_the_next_is_refused(tmp_path):
    from sit_onnx.graph.load import load_model

    newest = onnx.defs.onnx_opset_version()
    path = tmp_path / "m.onnx"
    model = softmax_model([2, 3], -1)
    model.opset_import[0].version = newest
    onnx.save(model, path)
    assert load_model(path).opset_import[0].version == newest
    model.opset_import[0].version = newest + 1
    onnx.save(model, path)
    with pytest.raises(SitOnnxError) as refused:
        load_model(path)
    assert str(refused.value) == (
        f"{path}: uses opset {newest + 1}, newer than this onnx ({onnx.__version__}) knows (up to {newest})"
    )


@pytest.mark.parametrize(
    "error, said",
    [(PermissionError(13, "Permission denied"), "Permission denied"), (OSError("disk on fire"), "disk on fire")],
)
def test_an_unreadable_file_says_the_systems_reason(tmp_path, monkeypatch, error, said):
    path = tmp_path / "m.onnx"
    onnx.save(softmax_model([2, 3], -1), path)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(onnx, "load", fail)
    with pytest.raises(SitOnnxError) as refused:
        read_model_proto(path)
    assert str(refused.value) == f"{path}: cannot read ({said})"


def test_external_data_without_a_location_points_at_the_folder(tmp_path):
    """A tensor marked external without a location names no file: the folder itself, which then
    fails to load as data (one line), never a file elsewhere."""
    from sit_onnx.graph.load import external_data_files, load_model

    model = softmax_model([2, 3], -1)
    tensor = onnx.numpy_helper.from_array(np.zeros(3, np.float32), "w")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.external_data.add(key="offset", value="0")
    model.graph.initializer.append(tensor)
    assert external_data_files(model, tmp_path) == [tmp_path.resolve()]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(SitOnnxError, match=f"^{path}: its external data cannot be read \\(.*tensor name: w\\).*empty"):
        load_model(path)
