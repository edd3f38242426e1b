"""An in-memory model too large for one protobuf reaches onnxruntime as a file with its weights
beside it, in a folder that is gone once the session exists; a small one goes as it is."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sit_onnx.runtime
from sit_onnx.evaluate.seeding import proto_session
from sit_onnx.graph import save
from sit_onnx.runtime import SessionSpec


def _weighted():
    weight = np.arange(4096, dtype=np.float32).reshape(64, 64) / 4096  # 16 kB: a tensor save moves out
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), weight


@pytest.mark.parametrize("too_large", [False, True])
def test_the_model_reaches_onnxruntime_whole_either_way(monkeypatch, too_large):
    if too_large:  # the limit lowered so that 16 kB of weights count as past it
        monkeypatch.setattr(save, "PROTOBUF_LIMIT", 2**26 + 1024)
    given, files = [], []
    real = sit_onnx.runtime.make_session

    def recording(model, spec, label):
        given.append(model)
        files.extend(sorted(p.name for p in model.parent.iterdir()) if isinstance(model, Path) else [])
        return real(model, spec, label)

    monkeypatch.setattr(sit_onnx.runtime, "make_session", recording)
    model, weight = _weighted()
    session = proto_session(model, SessionSpec(use_library=False), "big.onnx")
    x = np.random.default_rng(0).normal(size=(2, 64)).astype(np.float32)
    scores = x @ weight
    expected = np.exp(scores - scores.max(1, keepdims=True))
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected / expected.sum(1, keepdims=True), rtol=1e-5)
    (source,) = given
    if too_large:
        assert isinstance(source, Path) and source.name == "model.onnx"
        assert source.parent.name.startswith("sit-onnx-session-") and not source.parent.exists()
        assert files == ["model.onnx", "model.onnx.data"]  # the weights written beside, not inside
    else:
        assert isinstance(source, onnx.ModelProto) and source is model
