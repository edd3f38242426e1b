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
