"""A bug still ends in one line and exit 1 (saying it is ours and how to see more); memory
exhaustion says so; SIT_ONNX_DEBUG=1 lets the traceback through. The numpy references stay quiet
on the inputs that make numpy warn."""

import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import sit_onnx.graph.convert_file as convert_file
from sit_onnx.cli import main
from sit_onnx.neurons import SoftmaxOptions, shipped_params, si_norm, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.helpers import softmax_model, warnings_fail


@pytest.fixture
def model(tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(softmax_model([2, 5], -1), str(path))
    return path


def _raising(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


def test_a_system_error_on_a_path_names_the_path_and_the_reason(model, monkeypatch):
    """An OSError with a file name (a path too long, a folder not searchable) is the user's path, not
    our bug: said as the path and the system's reason. Without a file name it stays an internal
    error; SIT_ONNX_DEBUG=1 lets either through."""
    monkeypatch.delenv("SIT_ONNX_DEBUG", raising=False)
    args = ["rewrite", str(model), "-o", str(model.with_name("o.onnx"))]
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(PermissionError(13, "Permission denied", "/x/y")))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.output == "Error: /x/y: Permission denied\n"
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(OSError("no file named")))
    assert CliRunner().invoke(main, args).output.startswith("Error: internal error: OSError: no file named")
    unnumbered = OSError("cannot map the file\nat offset 0")  # a path, but no errno and no strerror
    unnumbered.filename = "/x/z"
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(unnumbered))
    assert CliRunner().invoke(main, args).output == "Error: /x/z: cannot map the file\n"
    bare = OSError()
    bare.filename = "/x/w"
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(bare))
    assert CliRunner().invoke(main, args).output == "Error: /x/w: OSError\n"
    monkeypatch.setenv("SIT_ONNX_DEBUG", "1")
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(PermissionError(13, "Permission denied", "/x/y")))
    assert isinstance(CliRunner().invoke(main, args).exception, PermissionError)


def test_a_bug_is_one_line_naming_itself(model, monkeypatch):
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(ValueError("boom\nmore detail")))
    monkeypatch.delenv("SIT_ONNX_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["rewrite", str(model), "-o", str(model.with_name("o.onnx"))])
    assert result.exit_code == 1
    assert result.output == "Error: internal error: ValueError: boom (set SIT_ONNX_DEBUG=1 for a traceback)\n"


def test_out_of_memory_is_said_plainly(model, monkeypatch):
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(MemoryError()))
    result = CliRunner().invoke(main, ["rewrite", str(model), "-o", str(model.with_name("o.onnx"))])
    assert result.exit_code == 1 and result.output == "Error: out of memory\n"


def test_a_reader_leaving_early_is_no_error(model, monkeypatch):
    """`sit-onnx ... | head`: a broken pipe exits 1 quietly, not as an internal error."""
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(BrokenPipeError(32, "Broken pipe")))
    result = CliRunner().invoke(main, ["rewrite", str(model), "-o", str(model.with_name("o.onnx"))])
    assert result.exit_code == 1 and result.output == ""


def test_a_closed_pipe_in_a_real_process_says_nothing():
    """The real thing: stdout's reader gone before the command prints; the process's stderr stays
    empty (no internal error, nothing from the final flush) and it exits 1."""
    import os
    import subprocess
    import sys

    code = "import sys; from sit_onnx.cli import main; sys.exit(main(['neuron', 'show', '-k', '12']))"
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write fails with EPIPE
    done = subprocess.run([sys.executable, "-c", code], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert (done.returncode, done.stderr) == (1, "")


def test_debug_lets_the_traceback_through(model, monkeypatch):
    monkeypatch.setattr(convert_file, "rewrite_file", _raising(ValueError("boom")))
    monkeypatch.setenv("SIT_ONNX_DEBUG", "1")
    result = CliRunner().invoke(main, ["rewrite", str(model), "-o", str(model.with_name("o.onnx"))])
    assert isinstance(result.exception, ValueError) and "internal error" not in result.output


def test_references_are_quiet_on_zero_nan_and_huge_rows():
    w = np.array([[0.0, 0.0, 0.0], [np.nan, 1.0, 2.0], [1e38, 1e38, 1e38], [np.inf, 1.0, 0.0]], np.float32)
    x = np.array([[-1e4, 0.0, 1e4], [np.nan, 0.0, 1.0], [-np.inf, 0.0, 1.0]], np.float32)
    with warnings_fail():
        out = si_norm(w, axis=-1)
        rated = si_norm(w, axis=-1, time_steps=8)
        soft = spiking_softmax(x, shipped_params(8, SHIFT_RANGE), options=SoftmaxOptions(shift=True, sigmoid=True))
    np.testing.assert_array_equal(out[0], 0.0)  # an all-zero row spikes nowhere
    assert np.isnan(out[1]).all() and np.isnan(rated[1]).all()  # a NaN row stays NaN
    assert out.dtype == np.float32 and soft.dtype == np.float32 and np.isfinite(soft[0]).all()


def test_quieting_other_libraries_lasts_only_the_command(model):
    from onnx_graphsurgeon.logger import G_LOGGER

    before, severity = np.geterr(), G_LOGGER.severity
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        filters = list(warnings.filters)
        result = CliRunner().invoke(main, ["rewrite", str(model), "-o", str(model.with_name("o.onnx"))])
        assert result.exit_code == 0, result.output
        assert warnings.filters == filters  # a program calling main keeps its own warning filters
    assert np.geterr() == before and G_LOGGER.severity == severity
