"""The pass works on a weightless view (light.py): large weights leave the model as typed inputs and
come back untouched. What reads their shapes must still see them, and what the source declared
must still be declared."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.light import ASIDE_BYTES, light_copy
from tests.helpers import run


def _packed_attention(hidden=32, heads=4, weights_as_inputs=False):
    """com.microsoft Attention whose packed QKV weights (hidden x 3·hidden floats) are far above
    ASIDE_BYTES: its expansion reads their shape."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (hidden, 3 * hidden)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, 3 * hidden).astype(np.float32), "b")
    assert w.ByteSize() > ASIDE_BYTES
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], name="att", domain="com.microsoft", num_heads=heads)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, hidden])]
    if weights_as_inputs:  # as IR < 4 required: every initializer listed as a graph input too
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in (w, b)]
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w, b]
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_large_weights_keep_their_shapes_in_the_light_copy():
    light, aside = light_copy(_packed_attention())
    assert aside == {"w"}  # the bias (384 bytes) stays inside
    declared = {i.name: i.type.tensor_type for i in light.graph.input}
    assert [d.dim_value for d in declared["w"].shape.dim] == [32, 96] and declared["w"].elem_type == TensorProto.FLOAT


def test_an_attention_op_reading_a_large_weights_shape_is_expanded():
    model = _packed_attention()
    new, report = rewrite_model(model, RewriteOptions())
    assert [(a["op"], a["expanded"]) for a in report.attention] == [("com.microsoft::Attention", True)]
    assert len(report.converted) == 1
    x = np.random.default_rng(1).normal(0, 1, (2, 6, 32)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    original, converted = session.run(None, {"x": x})[0], run(new, {"x": x})[0]
    assert np.sum(original * converted) / np.linalg.norm(original) / np.linalg.norm(converted) > 0.999
    names = [t.name for t in new.graph.initializer]
    assert set(names) >= {"w", "b"} and len(names) == len(set(names))
    assert [i.name for i in new.graph.input] == ["x"]  # set aside as a typed input, it comes back a weight only


def _weight_of(size: int, stem: str):
    """A float weight whose serialised size is exactly `size` bytes (its name's length tunes it)."""
    for count in range(size // 4, 0, -1):
        for extra in range(8):
            tensor = numpy_helper.from_array(np.zeros(count, np.float32), stem + "_" * extra)
            if tensor.ByteSize() == size:
                return tensor
    raise AssertionError(size)


def test_only_weights_above_the_bound_leave_the_light_copy():
    model = _packed_attention()
    at, above = _weight_of(ASIDE_BYTES, "at"), _weight_of(ASIDE_BYTES + 1, "above")
    model.graph.initializer.extend([at, above])
    light, aside = light_copy(model)
    assert aside == {"w", above.name}
    assert at.name in {t.name for t in light.graph.initializer}


def test_weights_the_source_lists_as_inputs_stay_listed():
    """IR < 4 listed every initializer as an input too; the rewrite keeps that declaration for the
    large weights set aside as much as for the small ones kept inside."""
    model = _packed_attention(weights_as_inputs=True)
    new, _ = rewrite_model(model, RewriteOptions())
    assert [i.name for i in new.graph.input] == ["x", "w", "b"]
    names = [t.name for t in new.graph.initializer]
    assert set(names) >= {"w", "b"} and len(names) == len(set(names))  # each once: the small ones from the light copy
    x = np.zeros((1, 6, 32), np.float32)
    assert run(new, {"x": x})[0].shape == (1, 6, 32)
