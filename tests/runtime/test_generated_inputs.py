"""`run` without --inputs: what generate_feeds makes for each input type and shape."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.inputs import generate_feeds


def _session(inputs):
    """An identity per input, so the session exposes exactly these input specs."""
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name, _, _ in inputs]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in inputs],
        [helper.make_tensor_value_info(f"{name}_out", dtype, shape) for name, dtype, shape in inputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_each_type_gets_its_own_values_and_dynamic_dims_batch_then_one():
    session = _session([
        ("x", TensorProto.FLOAT, ["batch", 3, "seq"]),
        ("h", TensorProto.FLOAT16, [2, 5]),
        ("ids", TensorProto.INT64, ["batch", "seq"]),
        ("small", TensorProto.INT8, [64]),
        ("mask", TensorProto.BOOL, [4, 64]),
    ])  # fmt: skip
    feeds = generate_feeds(session)
    assert {k: (v.dtype, v.shape) for k, v in feeds.items()} == {
        "x": (np.float32, (1, 3, 1)),
        "h": (np.float16, (2, 5)),
        "ids": (np.int64, (1, 1)),
        "small": (np.int8, (64,)),
        "mask": (np.bool_, (4, 64)),
    }
    assert set(np.unique(feeds["small"])) == {0, 1, 2, 3}  # small non-negative ids, every one of them
    assert set(np.unique(feeds["mask"])) == {False, True}
    np.testing.assert_array_equal(feeds["x"].ravel(), np.random.default_rng(0).standard_normal(3).astype(np.float32))
    batched = generate_feeds(session, batch=4)
    assert batched["x"].shape == (4, 3, 1) and batched["ids"].shape == (4, 1)
    again, other = generate_feeds(session, seed=0), generate_feeds(session, seed=1)
    assert all(np.array_equal(again[k], feeds[k]) for k in feeds)  # the default seed is 0, reproducibly
    assert not np.array_equal(other["h"], feeds["h"])


def test_an_input_type_it_cannot_make_is_named():
    session = _session([("s", TensorProto.UINT16, [2])])
    with pytest.raises(SitOnnxError, match=r"^cannot generate input 's' of type tensor\(uint16\); pass --inputs$"):
        generate_feeds(session)
