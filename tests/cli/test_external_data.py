"""Models with external data: every file the output writes is an output (exists -> --force; one of
the input's files -> refused), wherever the command is run from; files get the usual mode; an
interrupted save leaves nothing behind."""

import hashlib
import os
import signal
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.graph.save import save_model


def _model(rng):
    weight = numpy_helper.from_array(rng.normal(size=(64, 64)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save_external(model, path, data_name):
    path.parent.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(path.parent)  # onnx checks `location` against the current directory
    try:
        onnx.save(model, path.name, save_as_external_data=True, location=data_name, size_threshold=0)
    finally:
        os.chdir(cwd)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _invoke(*args, cwd=None):
    cwd_before = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(cwd_before)


def _one_line_error(result, text):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0] and "internal error" not in lines[0], result.output


@pytest.fixture
def ext_model(tmp_path, rng):
    """m/input.onnx whose weights sit in m/out.onnx.data: the name a conversion to m/out.onnx writes."""
    src = tmp_path / "m" / "input.onnx"
    _save_external(_model(rng), src, "out.onnx.data")
    return src


def test_output_data_file_that_is_the_inputs_weights_is_refused(tmp_path, ext_model, params_file):
    before = _digests(ext_model.parent)
    result = _invoke("rewrite", "m/input.onnx", "-o", "m/out.onnx", "--params", params_file, "--force", cwd=tmp_path)
    _one_line_error(result, "refusing to overwrite the input's external data file")
    assert _digests(ext_model.parent) == before
    onnx.load(str(ext_model))  # the input still loads, weights and all


def test_output_named_as_the_inputs_data_file_is_refused(tmp_path, ext_model, params_file):
    before = _digests(ext_model.parent)
    target = ext_model.parent / "out.onnx.data"
    _one_line_error(_invoke("rewrite", ext_model, "-o", target, "--params", params_file, "--force"), "refusing")
    assert _digests(ext_model.parent) == before


def test_existing_data_file_beside_the_output_needs_force(tmp_path, rng, params_file):
    src = tmp_path / "in" / "m.onnx"
    _save_external(_model(rng), src, "m.weights")
    (tmp_path / "o.onnx.data").write_text("someone else's")
    result = _invoke("rewrite", src, "-o", tmp_path / "o.onnx", "--params", params_file)
    _one_line_error(result, "o.onnx.data exists (use --force")
    assert (tmp_path / "o.onnx.data").read_text() == "someone else's" and not (tmp_path / "o.onnx").exists()
    assert _invoke("rewrite", src, "-o", tmp_path / "o.onnx", "--params", params_file, "--force").exit_code == 0
    assert (tmp_path / "o.onnx.data").stat().st_size == 64 * 64 * 4


def test_default_output_does_not_replace_an_existing_data_file(tmp_path, rng, params_file):
    src = tmp_path / "m.onnx"
    _save_external(_model(rng), src, "m.weights")
    (tmp_path / "m.sit.onnx.data").write_text("keep")
    _one_line_error(_invoke("rewrite", src, "--params", params_file), "m.sit.onnx.data exists")
    assert (tmp_path / "m.sit.onnx.data").read_text() == "keep"


@pytest.mark.parametrize("run_from", ["output", "elsewhere"])
def test_rewrite_again_with_force_from_any_folder(tmp_path, rng, params_file, run_from):
    src = tmp_path / "in" / "m.onnx"
    _save_external(_model(rng), src, "m.weights")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "conv.onnx.data").write_text("unrelated, in the current folder")
    cwd = out if run_from == "output" else tmp_path / "elsewhere"
    for _ in range(2):  # the second run replaces the first one's two files
        result = _invoke("rewrite", src, "-o", out / "conv.onnx", "--params", params_file, "--force", cwd=cwd)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "conv.onnx.data").read_text() == "unrelated, in the current folder"
    loaded = onnx.load(str(out / "conv.onnx"))
    np.testing.assert_array_equal(
        numpy_helper.to_array(loaded.graph.initializer[0]),
        numpy_helper.to_array(onnx.load(str(src)).graph.initializer[0]),
    )


def test_dangling_symlink_at_the_output_needs_force(tmp_path, params_file):
    from tests.helpers import softmax_model

    src = tmp_path / "m.onnx"
    onnx.save(softmax_model([2, 5], -1), str(src))
    link = tmp_path / "m.sit.onnx"
    link.symlink_to(tmp_path / "nowhere")
    _one_line_error(_invoke("rewrite", src, "--params", params_file), "exists (use --force")
    assert link.is_symlink()


def test_written_files_take_the_umask(tmp_path, rng):
    old = os.umask(0o022)
    try:
        save_model(_model(rng), tmp_path / "a.onnx", external=True)
    finally:
        os.umask(old)
    for name in ("a.onnx", "a.onnx.data"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "a.onnx.data"]  # no staging folder left


def test_external_data_of_only_small_tensors_converts_to_one_file(tmp_path, rng):
    """A model saved with every tensor outside (size_threshold=0), none large enough for ours to move:
    the output is one file, not a model naming a data file that was never written (the save failed)."""
    small = _model(rng)
    small.graph.initializer[0].CopyFrom(numpy_helper.from_array(rng.normal(size=(64, 2)).astype(np.float32), "w"))
    small.graph.node[0].input[:] = ["w", "x"]  # (64, 2) @ (2, 64): 512 bytes of weights
    small.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    src, out = tmp_path / "m" / "small.onnx", tmp_path / "m" / "small.sit.onnx"
    _save_external(small, src, "small.onnx.data")
    result = _invoke("rewrite", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["small.onnx", "small.onnx.data", "small.sit.onnx"]
    x = rng.normal(size=(2, 64)).astype(np.float32)
    from tests.helpers import run

    got = run(onnx.load(str(out)), {"x": x})[0]
    reference = run(onnx.load(str(src)), {"x": x})[0]
    assert got.shape == (64, 64) and np.abs(got - reference).max() < 0.05


def test_a_one_file_input_with_weights_gives_a_one_file_output(tmp_path, rng):
    """Only an input with a data file (or one too large for a protobuf) gets one beside its output:
    a single-file model of 16 KB of weights stays a single file."""
    src, out = tmp_path / "m" / "one.onnx", tmp_path / "m" / "one.sit.onnx"
    src.parent.mkdir()
    onnx.save(_model(rng), str(src))
    result = _invoke("rewrite", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["one.onnx", "one.sit.onnx"]


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_work(tmp_path, rng, monkeypatch):
    """(Root may write anywhere, so the permission check is what is faked here.)"""
    src = tmp_path / "one.onnx"
    onnx.save(_model(rng), str(src))
    readable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and readable(path, mode))
    _one_line_error(_invoke("rewrite", src, "-o", tmp_path / "out.onnx"), f"{tmp_path}: output folder is not writable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.onnx"]


SLOW_SAVE = """
import sys, time, onnx
from onnx import external_data_helper
from sit_onnx.graph import save
real = external_data_helper.write_external_data_tensors
def slow(model, folder):
    real(model, folder)
    print("written", flush=True)
    time.sleep(30)
save.external_data_helper.write_external_data_tensors = slow
model = onnx.load(sys.argv[1])
save.save_model(model, sys.argv[2], external=True)
"""


def test_sigterm_during_a_save_leaves_no_staging_folder(tmp_path, rng):
    src = tmp_path / "src.onnx"
    onnx.save(_model(rng), str(src))
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(src), str(out / "m.onnx")], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "written"
    assert any(p.name.startswith(".m.onnx.") for p in out.iterdir())  # staging exists mid-save
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=20)
    assert child.returncode != 0
    assert list(out.iterdir()) == []
