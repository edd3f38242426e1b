"""Small builders and runners the tests share."""

import contextlib
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.neurons.params import NeuronParams

# Fixtures that compute with sit_onnx and are shared by a module's tests. Under mutmut they are
# rebuilt per test: mutmut picks a mutant's tests by which test called the mutated function, and a
# module-scoped fixture's calls count for the first test that used it only, so the others (often
# the ones asserting on the result) would never run against the mutant.
SHARED_SCOPE = "function" if "MUTANT_UNDER_TEST" in os.environ else "module"


@contextlib.contextmanager
def warnings_fail():
    """Any warning inside fails the test, with numpy's floating-point checks at their defaults: a
    library user sees every RuntimeWarning the code does not silence itself."""
    with warnings.catch_warnings(), np.errstate(divide="warn", over="warn", invalid="warn", under="ignore"):
        warnings.simplefilter("error")
        yield


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


def chain_model(nodes, shape=(2, 3), opset=17, initializer=()) -> onnx.ModelProto:
    """`nodes` as a model reading float x and writing float y, both of `shape`."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        list(initializer),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def optimized_like_model() -> onnx.ModelProto:
    """What onnxruntime's optimizer writes around an attention: its own SimplifiedLayerNormalization
    in the default domain (onnx's checker does not know it, so a source's check is tolerated and the
    defects behind it reach the pass: a node spelling "ai.onnx" was found so), a Relu, a Cast with
    opset-19 `saturate`, then the Softmax, at opset 20."""
    nodes = [
        helper.make_node("SimplifiedLayerNormalization", ["x", "scale"], ["n"], axis=-1, epsilon=1e-5, name="norm"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Cast", ["r"], ["c"], to=TensorProto.FLOAT, saturate=1, name="cast"),
        helper.make_node("Softmax", ["c"], ["y"], axis=-1, name="sm"),
    ]
    return chain_model(nodes, opset=20, initializer=[numpy_helper.from_array(np.ones(3, np.float32), "scale")])


def random_params(rng: np.random.Generator, steps: int) -> NeuronParams:
    """Any SI-exp neuron will do for the kernels: they must reproduce the reference's numbers."""
    return NeuronParams(
        np.sort(rng.uniform(-8, 1, steps))[::-1], rng.uniform(0.1, 3, steps), rng.uniform(0, 1, steps), (-8, 1)
    )


def spiking_ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node if n.domain == "ai.sit"]


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a `table` in a command's text output, cut at the dashed line's columns."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans, start = [], 0
    for dashes in lines[rule].split("  "):
        spans.append((start, start + len(dashes)))
        start += len(dashes) + 2
    cut = lambda line: [line[a:b].strip() for a, b in spans]  # noqa: E731
    rows = []
    for line in lines[rule + 1 :]:
        if len(line) != start - 2:  # the table's rows are exactly as wide as its rule
            break
        rows.append(cut(line))
    return cut(lines[rule - 1]), rows


def attention_classifier(rng: np.random.Generator, rows: int, scale: float = 1.0):
    """A tiny 'attention classifier', logits = softmax(x @ w) @ v (one site, 'att'), with `rows` inputs
    and the labels the original model predicts for them."""
    w, v = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["s"]),
            helper.make_node("Softmax", ["s"], ["p"], axis=-1, name="att"),
            helper.make_node("MatMul", ["p", "v"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(v, "v")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = (scale * rng.normal(size=(rows, 6))).astype(np.float32)
    s = x @ w
    p = np.exp(s - s.max(1, keepdims=True))
    labels = np.argmax((p / p.sum(1, keepdims=True)) @ v, axis=1).astype(np.int64)
    return model, x, labels


def record_session_specs(monkeypatch, module) -> list:
    """The SessionSpec of every session `module` makes from now on, in order (the sessions are real)."""
    from sit_onnx.runtime import SessionSpec, make_session

    specs = []

    def recording(model, spec=SessionSpec()):
        specs.append(spec)
        return make_session(model, spec)

    monkeypatch.setattr(module, "make_session", recording)
    return specs
