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
    assert result.exit_code == 1 and "not a readable .npz" in result.output


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
