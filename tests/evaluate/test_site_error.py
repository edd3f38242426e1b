"""Per-site error: each converted main-graph site's output against the exact softmax of its own logits."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.evaluate.site_error import site_errors
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import softmax
from sit_onnx.neurons.quality import mean_kl
from tests.helpers import run


def _model():
    """Two sites over different axes of the same logits, and one inside an If branch."""
    rng = np.random.default_rng(5)
    w = (2 * rng.normal(size=(6, 5))).astype(np.float32)
    branch = helper.make_graph(
        [helper.make_node("Softmax", ["s"], ["then_y"], name="in_branch", axis=-1)],
        "then",
        [],
        [helper.make_tensor_value_info("then_y", TensorProto.FLOAT, [4, 5])],
    )
    other = helper.make_graph(
        [helper.make_node("Relu", ["s"], ["else_y"])], "else", [],
        [helper.make_tensor_value_info("else_y", TensorProto.FLOAT, [4, 5])],
    )  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["s"]),
        helper.make_node("Softmax", ["s"], ["cols"], name="over_rows", axis=0),
        helper.make_node("Softmax", ["s"], ["rows"], name="over_cols", axis=1),
        helper.make_node("If", ["cond"], ["b"], then_branch=branch, else_branch=other),
    ]
    out = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 5]) for n in ("cols", "rows", "b", "s")]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        out,
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_each_site_the_data_reaches_against_its_own_axis():
    converted, report = rewrite_model(_model(), RewriteOptions(steps=4))
    assert sorted(s.name for s in report.converted) == ["in_branch", "over_cols", "over_rows"]
    feeds = {"x": np.random.default_rng(6).normal(size=(4, 6)).astype(np.float32), "cond": np.array(False)}
    assert [e.name for e in site_errors(converted, report, feeds)] == ["over_rows", "over_cols"]  # branch not taken
    feeds["cond"] = np.array(True)
    errors = site_errors(converted, report, feeds)
    assert [e.name for e in errors] == ["over_rows", "over_cols", "in_branch"]  # the taken branch is read out
    cols, rows, branch, s = (o.astype(np.float64) for o in run(converted, feeds))
    for error, got, axis in zip(errors, (cols, rows, branch), (0, 1, 1)):
        exact = softmax(s.astype(np.float64), axis=axis)
        diff = np.abs(exact - got)
        assert error.max_abs == pytest.approx(diff.max(), rel=1e-6) and error.max_abs > 1e-3  # K=4 is inexact
        assert error.mean_abs == pytest.approx(diff.mean(), rel=1e-6) and error.mean_abs < error.max_abs
        assert error.kl == pytest.approx(mean_kl(exact, got, axis), rel=1e-6) and error.kl > 0
    # each site is judged along its own axis: the other axis' softmax is far from it
    assert errors[0].max_abs < np.abs(softmax(s.astype(np.float64), axis=1) - cols).max() / 2
