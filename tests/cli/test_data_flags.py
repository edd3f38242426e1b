"""The data commands check --data/--dataset before they load the model: a 3 GB model took 4 s and
4 GB of memory to be told a flag was missing. A model that cannot load is still named once the
flags are right."""

import pytest
from click.testing import CliRunner

from sit_onnx.cli import main

DATA_COMMANDS = ["eval", "layers", "calibrate", "energy"]


def _one_line(args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.count("\n") == 1, result.output
    return result.output.removeprefix("Error: ").strip()


@pytest.fixture
def not_a_model(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not a model")  # loading it would fail with its own message
    return path


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_no_data_flag_is_refused_before_the_model_is_read(command, not_a_model):
    assert _one_line([command, not_a_model]) == "give exactly one of --data FILE.npz or --dataset digits"


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_both_data_flags_are_refused_before_the_model_is_read(command, not_a_model, tmp_path):
    data = tmp_path / "d.npz"
    data.write_bytes(b"")
    said = _one_line([command, not_a_model, "--data", data, "--dataset", "digits"])
    assert said == "give exactly one of --data FILE.npz or --dataset digits"


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_a_missing_data_file_is_named_before_the_model_is_read(command, not_a_model, tmp_path):
    missing = tmp_path / "nowhere.npz"
    assert _one_line([command, not_a_model, "--data", missing]) == f"{missing}: no such file"


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_with_the_flags_right_the_model_is_what_is_refused(command, not_a_model):
    said = _one_line([command, not_a_model, "--dataset", "digits"])
    assert said.startswith(f"{not_a_model}: ") and "--data" not in said


def test_a_data_folder_is_no_file(not_a_model, tmp_path):
    """A folder is there, so "no such file" (said before) sent the user looking for a typo."""
    assert _one_line(["eval", not_a_model, "--data", tmp_path]) == f"{tmp_path}: not a file"
    out = tmp_path / "out.onnx"
    assert _one_line(["rewrite", not_a_model, "-o", out, "--calibrate", tmp_path]) == f"{tmp_path}: not a file"
    assert _one_line(["run", not_a_model, "--inputs", tmp_path]) == f"{tmp_path}: not a file"
    assert not out.exists()


def test_rewrite_names_a_missing_calibration_file_before_the_model_is_read(not_a_model, tmp_path):
    missing = tmp_path / "nowhere.npz"
    out = tmp_path / "out.onnx"
    assert _one_line(["rewrite", not_a_model, "-o", out, "--calibrate", missing]) == f"{missing}: no such file"
    assert not out.exists()
    said = _one_line(["rewrite", not_a_model, "-o", out, "--calibrate", "digits"])
    assert said.startswith(f"{not_a_model}: ")  # the bundled set needs no file: the model is what is wrong


@pytest.fixture
def model_path(tmp_path):
    import onnx

    from tests.helpers import softmax_model

    path = tmp_path / "good.onnx"
    onnx.save(softmax_model(["b", 4], -1), str(path))
    return path


def test_run_and_compare_name_a_missing_inputs_file_before_making_a_session(model_path, tmp_path, monkeypatch):
    """The sessions of a large model take many seconds (a 3 GB one: 16 s for `run`, 30 s for
    `compare`) before a missing --inputs file was named."""
    import sit_onnx.runtime as runtime

    def no_session(*args, **kwargs):
        raise AssertionError("a session was made before the inputs file was read")

    monkeypatch.setattr(runtime, "make_session", no_session)
    missing = tmp_path / "nowhere.npz"
    assert _one_line(["run", model_path, "--inputs", missing]) == f"{missing}: no such file"
    assert _one_line(["compare", model_path, model_path, "--inputs", missing]) == f"{missing}: no such file"
    assert _one_line(["run", tmp_path / "nope.onnx", "--inputs", missing]) == f"{tmp_path / 'nope.onnx'}: no such file"


@pytest.mark.parametrize("command", ["eval", "energy"])
def test_a_missing_converted_model_is_named_before_the_original_is_read(command, not_a_model, tmp_path):
    """--converted nowhere.onnx was named after MODEL had been read (5 s for a 3 GB one)."""
    missing = tmp_path / "nowhere.onnx"
    said = _one_line([command, not_a_model, "--dataset", "digits", "--converted", missing])
    assert said == f"{missing}: no such file"
    folder = _one_line([command, not_a_model, "--dataset", "digits", "--converted", tmp_path])
    assert folder == f"{tmp_path}: not a file"


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--params", "{missing}"], "{missing}: parameter file not found"),
        (["--activations", "gelu", "--activation-params", "{missing}"], "{missing}: activation file not found"),
        (["--chain", "--activation-steps", "8"], "--activation-steps sets the K of converted activations"),
    ],
)
def test_rewrite_checks_its_options_before_the_model_is_read(flags, said, not_a_model, tmp_path):
    """--params nowhere.json was named after the model had loaded (8 s for a 3 GB one)."""
    missing, out = tmp_path / "nowhere.json", tmp_path / "out.onnx"
    args = ["rewrite", not_a_model, "-o", out, *[f.format(missing=missing) for f in flags]]
    assert _one_line(args).startswith(said.format(missing=missing))
    assert not out.exists()


def test_rewrite_file_checks_its_options_before_the_model_is_read(not_a_model, tmp_path):
    import sit_onnx
    from sit_onnx.errors import SitOnnxError

    options = sit_onnx.RewriteOptions(params_file=tmp_path / "nowhere.json")
    with pytest.raises(SitOnnxError, match="nowhere.json: parameter file not found"):
        sit_onnx.rewrite_file(not_a_model, tmp_path / "out.onnx", options)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_calibration_data_that_gives_a_site_no_finite_logit_is_refused_naming_it(tmp_path, value):
    """All-NaN (or infinite) inputs reach every site as NaN: calibration has nothing to judge a set
    by. It was an internal error ("no row holds a finite logit")."""
    import numpy as np
    import onnx

    from tests.helpers import softmax_model

    model, data, out = tmp_path / "m.onnx", tmp_path / "bad.npz", tmp_path / "out.onnx"
    onnx.save(softmax_model(["n", 5], -1), str(model))
    np.savez(data, x=np.full((4, 5), value, np.float32))
    said = _one_line(["rewrite", model, "-o", out, "--calibrate", data])
    assert said == (
        "--calibrate: the data gives site 'sm' no finite logit (all NaN or infinite): it cannot tell what set "
        "serves it; check the data for NaN or infinite values"
    )
    assert not out.exists()
    np.savez(data, x=np.where(np.arange(20).reshape(4, 5) < 5, value, 1.5).astype(np.float32))
    result = CliRunner().invoke(main, ["rewrite", str(model), "-o", str(out), "--calibrate", str(data)])
    assert result.exit_code == 0 and out.exists()  # one NaN row among finite ones: those rows serve
    one = np.full((4, 5), value, np.float32)
    one[0] = np.arange(5)
    np.savez(data, x=one)  # one finite row: it serves both halves (the held-out one had no row left)
    result = CliRunner().invoke(main, ["rewrite", str(model), "-o", str(out), "--force", "--calibrate", str(data)])
    assert result.exit_code == 0 and "internal error" not in result.output, result.output
