"""Small builders and runners the tests share."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from sit_onnx.neurons.params import NeuronParams


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def softmax_model(shape, axis=None, opset=17, dtype=TensorProto.FLOAT, name="sm"):
    attrs = {} if axis is None else {"axis": axis}
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name=name, **attrs)],
        "g",
        [helper.make_tensor_value_info("x", dtype, shape)],
        [helper.make_tensor_value_info("y", dtype, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def random_params(rng: np.random.Generator, steps: int) -> NeuronParams:
    """Any SI-exp neuron will do for the kernels: they must reproduce the reference's numbers."""
    return NeuronParams(
        np.sort(rng.uniform(-8, 1, steps))[::-1], rng.uniform(0.1, 3, steps), rng.uniform(0, 1, steps), (-8, 1)
    )


def spiking_ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node if n.domain == "ai.sit"]
