"""The session factory: providers, the library, and catching a silent function fallback."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.functions import spiking_functions
from sit_onnx.runtime import SessionSpec, make_session
from tests.helpers import softmax_model


def _spiking_model(elem_type):
    node = helper.make_node("SpikingExp", ["x"], ["y"], domain="ai.sit", thresholds=[0.0], resets=[1.0], weights=[2.0])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", elem_type, [3])],
        [helper.make_tensor_value_info("y", elem_type, [3])],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)],
        functions=spiking_functions(1, 17),
    )


def test_kernels_used_when_library_registered():
    session = make_session(_spiking_model(TensorProto.FLOAT), SessionSpec(provider="cpu", use_library=True))
    np.testing.assert_array_equal(session.run(None, {"x": np.array([-1, 0, 1], np.float32)})[0], [0, 2, 2])


def test_kernel_types_are_enforced_with_library():
    # the kernels take float32/float16 (the rewrite casts other types); a double site is refused in one line
    with pytest.raises(SitOnnxError, match="cannot load the model.*tensor\\(double\\)"):
        make_session(_spiking_model(TensorProto.DOUBLE), SessionSpec(provider="cpu", use_library=True))


def test_fallback_check_compares_placed_nodes(monkeypatch):
    """The check reads the graph onnxruntime placed: inlined function bodies leave fewer ai.sit nodes."""
    from sit_onnx.runtime import session as session_module

    counts = iter([1, 0])  # the model has one spiking op; pretend the placed graph has none
    monkeypatch.setattr(session_module, "spiking_node_count", lambda model: next(counts))
    with pytest.raises(SitOnnxError, match="only 0 of 1 spiking ops run on the sit-onnx kernels"):
        make_session(_spiking_model(TensorProto.FLOAT), SessionSpec(provider="cpu", use_library=True))


def test_function_fallback_runs_without_library():
    session = make_session(_spiking_model(TensorProto.DOUBLE), SessionSpec(provider="cpu", use_library=False))
    np.testing.assert_array_equal(session.run(None, {"x": np.array([-1, 0, 1], np.float64)})[0], [0, 2, 2])


def test_missing_provider_is_one_line_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing is missing")
    with pytest.raises(SitOnnxError, match="provider cuda is not available"):
        make_session(softmax_model([2, 3], -1), SessionSpec(provider="cuda"))


def test_unknown_provider():
    with pytest.raises(SitOnnxError, match="unknown provider"):
        make_session(softmax_model([2, 3], -1), SessionSpec(provider="tpu"))
