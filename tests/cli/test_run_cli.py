import json

import numpy as np
import onnx
from click.testing import CliRunner

from sit_onnx.cli import main
from tests.helpers import softmax_model


def _model(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(softmax_model(["b", 4], -1), str(path))
    return path


def test_run_generated_inputs(tmp_path):
    result = CliRunner().invoke(main, ["run", str(_model(tmp_path)), "--batch", "3", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["outputs"][0]["shape"] == [3, 4]
    assert abs(record["outputs"][0]["mean"] - 0.25) < 1e-6  # softmax rows of 4 average 1/4


def test_run_given_inputs(tmp_path):
    data = tmp_path / "in.npz"
    np.savez(data, x=np.zeros((2, 4), np.float32))
    result = CliRunner().invoke(main, ["run", str(_model(tmp_path)), "--inputs", str(data), "--json"])
    assert json.loads(result.output)["outputs"][0]["max"] == 0.25


def test_run_batch_beside_inputs_is_refused(tmp_path):
    """--batch sizes generated inputs: beside --inputs it was silently unused."""
    data = tmp_path / "in.npz"
    np.savez(data, x=np.zeros((2, 4), np.float32))
    result = CliRunner().invoke(main, ["run", str(_model(tmp_path)), "--inputs", str(data), "--batch", "1"])
    assert result.exit_code == 2
    assert (
        result.stderr.strip().splitlines()[-1] == "Error: --batch sizes generated inputs; --inputs brings its own rows"
    )


def test_compare_strict_check_refuses_the_approximate_thresholds(tmp_path):
    model = str(_model(tmp_path))
    for strict in (["--atol", "0.1"], ["--rtol", "0.1"]):
        for flag, value in (("--min-cosine", "0.5"), ("--min-agreement", "0.999")):
            result = CliRunner().invoke(main, ["compare", model, model, *strict, flag, value])
            assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1] == (
                f"Error: {flag} sets the approximate check; --atol/--rtol ask for the strict one"
            )
    assert CliRunner().invoke(main, ["compare", model, model, "--atol", "0", "--min-margin", "0.1"]).exit_code == 0


def test_run_bad_inputs(tmp_path):
    model = _model(tmp_path)
    data = tmp_path / "in.npz"
    for arrays, message in [
        ({"z": np.zeros((2, 4), np.float32)}, "lacks the model input 'x'"),
        ({"x": np.zeros((2, 5), np.float32)}, "wants ['b', 4]"),
        ({"x": np.zeros((2, 4), np.int64)}, "is int64"),
    ]:
        np.savez(data, **arrays)
        result = CliRunner().invoke(main, ["run", str(model), "--inputs", str(data)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    data.write_text("not an npz")
    result = CliRunner().invoke(main, ["run", str(model), "--inputs", str(data)])
    assert result.exit_code == 1 and "not an .npz file" in result.output


def test_run_refused_kernel_set_is_one_line(tmp_path, monkeypatch):
    from sit_onnx.graph.convert import RewriteOptions
    from sit_onnx.graph.convert_file import rewrite_file

    converted = tmp_path / "m.sit.onnx"
    rewrite_file(str(_model(tmp_path)), str(converted), RewriteOptions())
    monkeypatch.setenv("SIT_ONNX_CPU_ISA", "sse9")
    result = CliRunner().invoke(main, ["run", str(converted)])
    assert result.exit_code == 1
    assert "onnxruntime cannot load the model" in result.output and "SIT_ONNX_CPU_ISA=sse9" in result.output
    assert "internal error" not in result.output and len(result.output.strip().splitlines()) == 1


def _graph_model(tmp_path, nodes, out_shape=("b", 4), name="g.onnx", inits=()):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        list(inits),
    )
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_run_json_writes_non_finite_outputs_as_null(tmp_path):
    from onnx import helper

    model = _graph_model(tmp_path, [helper.make_node("Log", ["x"], ["y"])])  # log of <0 is NaN, log 0 is -inf
    data = tmp_path / "in.npz"
    np.savez(data, x=np.array([[-1, -1, -1, -1], [0, 0, 0, 0]], np.float32))
    result = CliRunner().invoke(main, ["run", str(model), "--inputs", str(data), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["outputs"][0]  # strict JSON: json.loads refuses NaN only if asked; check text
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    assert out["min"] is None and out["max"] is None and out["nan"] == 4 and out["inf"] == 4


def test_run_summary_ignores_non_finite_values(tmp_path):
    from onnx import helper

    model = _graph_model(tmp_path, [helper.make_node("Log", ["x"], ["y"])])
    data = tmp_path / "in.npz"
    np.savez(data, x=np.array([[1, np.e, -1, 0]], np.float32))
    out = json.loads(CliRunner().invoke(main, ["run", str(model), "--inputs", str(data), "--json"]).stdout)
    summary = out["outputs"][0]
    assert summary["min"] == 0.0 and abs(summary["max"] - 1.0) < 1e-6 and abs(summary["mean"] - 0.5) < 1e-6
    assert summary["nan"] == 1 and summary["inf"] == 1


def test_run_says_which_path_ran(tmp_path):
    from sit_onnx.graph.convert import RewriteOptions
    from sit_onnx.graph.convert_file import rewrite_file

    converted = tmp_path / "m.sit.onnx"
    rewrite_file(str(_model(tmp_path)), str(converted), RewriteOptions())
    with_kernels = CliRunner().invoke(main, ["run", str(converted), "--library", "--verify-kernels"])
    assert with_kernels.exit_code == 0 and "spiking ops ran on: sit-onnx kernels" in with_kernels.output
    fallback = CliRunner().invoke(main, ["run", str(converted), "--no-library", "--json"])
    assert json.loads(fallback.stdout)["spiking_ops"].startswith("function fallback")


def test_compare_shapes_differ_is_said(tmp_path):
    from onnx import helper

    a = _graph_model(tmp_path, [helper.make_node("Identity", ["x"], ["y"])], name="a.onnx")
    b = _graph_model(tmp_path, [helper.make_node("Concat", ["x", "x"], ["y"], axis=1)], ("b", 8), "b.onnx")
    result = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert result.exit_code == 1 and "shapes differ: [4, 4] vs [4, 8]" in result.output
    as_json = CliRunner().invoke(main, ["compare", str(a), str(b), "--json"])
    record = json.loads(as_json.stdout)
    assert record["passed"] is False and record["outputs"][0]["problem"].startswith("shapes differ")
    assert "Infinity" not in as_json.stdout


def test_compare_nan_in_both_is_a_match_nan_in_one_is_not(tmp_path):
    from sit_onnx.evaluate.compare import compare_arrays

    a = np.array([np.nan, 1.0, np.inf, 2.0])
    assert compare_arrays("y", a, a.copy(), 0.0, 0.0).passed
    b = a.copy()
    b[1] = np.nan
    result = compare_arrays("y", a, b, 1e9, 0.0)
    assert not result.passed and result.max_abs == float("inf")
    c = a.copy()
    c[2] = -np.inf
    assert not compare_arrays("y", a, c, 1e9, 0.0).passed
    d = a.copy()
    d[3] = 2.5
    near = compare_arrays("y", a, d, 0.5, 0.0)
    assert near.passed and near.max_abs == 0.5 and near.min_atol_to_pass == 0.5
    assert not compare_arrays("y", a, d, 0.49, 0.0).passed
    assert compare_arrays("y", a, d, 0.0, 0.25).passed  # rtol * |2| = 0.5 covers it
