"""`sit-onnx rewrite` on good and bad input: one-line errors, exit codes, no partial files."""

import hashlib
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from tests.helpers import run, softmax_model


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(softmax_model([2, 5], -1), str(path))
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, text, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert text in lines[-1], result.output
    if code == 1:
        assert len(lines) == 1, result.output


def test_default_output_beside_input(model_path, params_file):
    result = invoke("rewrite", model_path, "--params", params_file)
    assert result.exit_code == 0, result.output
    out = model_path.with_name("m.sit.onnx")
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert "1 of 1 softmax sites converted" in result.output


def test_json_report(model_path, params_file, tmp_path):
    result = invoke("rewrite", model_path, "--params", params_file, "-o", tmp_path / "o.onnx", "--json")
    record = json.loads(result.output)
    assert record["converted_count"] == 1 and record["ops_after"]["ai.sit::SpikingSoftmax"] == 1
    assert record["sites"][0]["replaced_with"] == ["SpikingSoftmax"] and record["options"]["fuse"] is True
    chain = invoke("rewrite", model_path, "--params", params_file, "-o", tmp_path / "c.onnx", "--chain", "--json")
    record = json.loads(chain.output)
    assert record["sites"][0]["replaced_with"] == ["ReduceMax", "Sub", "SpikingExp", "SpikingNorm"]
    assert record["options"]["fuse"] is False


def test_input_never_modified(model_path, params_file):
    before = hashlib.sha256(model_path.read_bytes()).hexdigest()
    invoke("rewrite", model_path, "--params", params_file)
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("command", ["rewrite", "eval"])
@pytest.mark.parametrize("steps", [["-k", "8"], ["--steps", "12"]])
def test_steps_with_a_parameter_file_are_refused_not_ignored(model_path, params_file, tmp_path, command, steps):
    """The file's K is what converts: -k 8 beside it was silently dropped (the report said K of the file)."""
    out = tmp_path / "o.onnx"
    args = ["-o", out] if command == "rewrite" else ["--dataset", "digits"]
    result = invoke(command, model_path, "--params", params_file, *steps, *args)
    assert_one_line_error(result, "Error: -k/--steps picks a shipped set; --params brings its own K", code=2)
    assert not out.exists()


def test_existing_output_needs_force(model_path, params_file):
    out = model_path.with_name("m.sit.onnx")
    out.write_text("keep me")
    assert_one_line_error(invoke("rewrite", model_path, "--params", params_file), "exists (use --force")
    assert out.read_text() == "keep me"
    assert invoke("rewrite", model_path, "--params", params_file, "--force").exit_code == 0


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda p: p.with_name("missing.onnx"), "no such file"),
        (lambda p: p.parent, "not a file"),
        (
            lambda p: (p.with_name("t.onnx").write_text("hello, not protobuf"), p.with_name("t.onnx"))[1],
            "not an ONNX model",
        ),
        (
            lambda p: (p.with_name("cut.onnx").write_bytes(p.read_bytes()[:40]), p.with_name("cut.onnx"))[1],
            "not an ONNX model",
        ),
    ],
)
def test_bad_input_files(model_path, params_file, make, text):
    result = invoke("rewrite", make(model_path), "--params", params_file)
    assert_one_line_error(result, text)
    assert not _leftovers(model_path.parent)


def test_model_without_softmax(tmp_path, params_file):
    model = softmax_model([2, 3], -1)
    model.graph.node[0].op_type = "Relu"
    del model.graph.node[0].attribute[:]
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    assert_one_line_error(invoke("rewrite", path, "--params", params_file), "no Softmax")
    assert not path.with_name("relu.sit.onnx").exists()


def test_opset_newer_than_onnx(tmp_path, params_file):
    model = softmax_model([2, 3], -1)
    model.opset_import[0].version = 999
    path = tmp_path / "future.onnx"
    path.write_bytes(model.SerializeToString())
    assert_one_line_error(invoke("rewrite", path, "--params", params_file), "opset 999")


def test_unwritable_output(model_path, params_file):
    assert_one_line_error(
        invoke("rewrite", model_path, "--params", params_file, "-o", "/proc/out.onnx"), "cannot write"
    )
    assert_one_line_error(
        invoke("rewrite", model_path, "--params", params_file, "-o", model_path.parent / "no" / "o.onnx"),
        "does not exist",
    )


def test_malformed_params_file(model_path, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"format": "sit-onnx/si-exp-params", "version": 1, "thresholds": [1], "resets": [], '
        '"weights": [1], "input_range": [-1, 1]}'
    )
    assert_one_line_error(invoke("rewrite", model_path, "--params", bad), "lengths differ")
    assert not model_path.with_name("m.sit.onnx").exists()


def test_bad_option_is_usage_error(model_path):
    result = invoke("rewrite", model_path, "--time-steps", "-3")
    assert result.exit_code == 2 and "Traceback" not in result.output and "--time-steps" in result.output


def test_external_data_model(tmp_path, params_file, rng):
    from onnx import numpy_helper

    from tests.cli.test_external_data import _model, _save_external

    src = tmp_path / "ext" / "m.onnx"
    _save_external(_model(rng), src, "m.weights")
    result = invoke("rewrite", src, "--params", params_file, "-o", tmp_path / "o.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.onnx.data").is_file()  # external data in, external data out
    out = onnx.load(str(tmp_path / "o.onnx"))
    assert numpy_helper.to_array(out.graph.initializer[0]).shape == (64, 64)
    onnx.checker.check_model(str(tmp_path / "o.onnx"), full_check=True)


def test_invalid_graph_is_refused(tmp_path, params_file):
    model = softmax_model([2, 5], -1)
    model.graph.node[0].input[0] = "nowhere"  # consumes a tensor nothing produces
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    assert_one_line_error(invoke("rewrite", path, "--params", params_file), "not a valid ONNX model")
    assert not path.with_name("broken.sit.onnx").exists()


def test_file_report_names_input_and_output(tmp_path, params_file):
    from sit_onnx.graph.convert import RewriteOptions
    from sit_onnx.graph.convert_file import default_output, rewrite_file

    source = tmp_path / "model"  # no .onnx suffix: the default output appends to the whole name
    onnx.save(softmax_model([2, 5], -1), str(source))
    assert default_output(source) == tmp_path / "model.sit.onnx"
    assert default_output(tmp_path / "m.onnx") == tmp_path / "m.sit.onnx"
    report = rewrite_file(source, None, RewriteOptions(params_file=params_file))
    assert report.input == str(source) and report.output == str(tmp_path / "model.sit.onnx")
    assert onnx.load(str(source)).graph.node[0].op_type == "Softmax"  # the input untouched


def test_refusal_says_which_input_file(tmp_path, params_file):
    path = tmp_path / "m.onnx"
    onnx.save(softmax_model([2, 5], -1), str(path))
    result = invoke("rewrite", path, "-o", path, "--force", "--params", params_file)
    assert_one_line_error(result, "refusing to overwrite the input model")


def test_time_steps_reach_the_written_node_and_its_output(model_path, tmp_path):
    """--time-steps N: rate-coded SI-norm, every weight a whole number of N spikes over N."""
    out = tmp_path / "o.onnx"
    assert invoke("rewrite", model_path, "-o", out, "--time-steps", "8").exit_code == 0
    converted = onnx.load(str(out))
    (node,) = converted.graph.node
    assert [a.i for a in node.attribute if a.name == "time_steps"] == [8]
    x = np.random.default_rng(0).normal(0, 2, (2, 5)).astype(np.float32)
    (y,) = run(converted, {"x": x})
    np.testing.assert_array_equal(y * 8, np.round(y * 8))
    assert np.all(y.sum(axis=-1) <= 1) and np.all(y.sum(axis=-1) >= 1 - 5 / 8) and y.max() > 0
