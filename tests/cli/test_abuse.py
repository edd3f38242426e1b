"""Every subcommand against bad files, bad arrays, bad parameter sets and bad paths: exit 1 (2 for
a malformed command line), exactly one line on stderr, never "internal error" or a traceback, no
file left behind, and the inputs unchanged (by hash)."""

import hashlib
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from tests.helpers import softmax_model

MODEL_COMMANDS = ["rewrite", "run", "eval", "layers", "calibrate", "energy"]


def _model_with_external_weight(location):
    """x + w -> Softmax, w stored in `location` (which the test makes unreadable or escaping)."""
    model = softmax_model(["b", 4], -1)
    model.graph.node[0].input[0] = "xw"
    model.graph.node.insert(0, onnx.helper.make_node("Add", ["x", "w"], ["xw"]))
    weight = onnx.numpy_helper.from_array(np.ones(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    model.graph.initializer.append(weight)
    return model


@pytest.fixture
def folder(tmp_path):
    """A folder of good and bad inputs; the test checks none of them changes. Beside it, a real
    file that escaping.onnx's external data points at through '..'."""
    (tmp_path / "outside.bin").write_bytes(np.ones(4, np.float32).tobytes())
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    onnx.save(softmax_model(["b", 4], -1), str(tmp_path / "good.onnx"))
    (tmp_path / "text.onnx").write_text("not a model at all\n")
    (tmp_path / "empty.onnx").write_bytes(b"")
    good = (tmp_path / "good.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (tmp_path / "dir.onnx").mkdir()
    for name, location in (("escaping", "../outside.bin"), ("missing_data", "nowhere.bin")):
        (tmp_path / f"{name}.onnx").write_bytes(_model_with_external_weight(location).SerializeToString())
    np.save(tmp_path / "single.npy", np.zeros((2, 4), np.float32))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    np.savez(tmp_path / "wrong_name.npz", z=np.zeros((2, 4), np.float32))
    np.savez(tmp_path / "wrong_rank.npz", x=np.zeros((2, 4, 1), np.float32))
    np.savez(tmp_path / "wrong_dtype.npz", x=np.zeros((2, 4), np.int64))
    np.savez(tmp_path / "wrong_dim.npz", x=np.zeros((2, 5), np.float32))
    (tmp_path / "text.npz").write_text("not an archive")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 cut short")
    np.savez(tmp_path / "objects.npz", x=np.array([None, 1.0], dtype=object))
    np.savez(tmp_path / "scalar.npz", x=np.float32(1.0))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "huge_int.json").write_text('{"format": "sit-onnx/si-exp-params", "version": ' + "9" * 5000 + "}")
    record = {
        "format": "sit-onnx/si-exp-params",
        "version": 1,
        "thresholds": [0.0],
        "resets": [1.0],
        "weights": [1.0],
        "input_range": [-1, 1],
    }
    for name, change in {
        "bad_meta": {"meta": [1, 2]},
        "bad_rmse": {"rmse": "low"},
        "float32_overflow": {"thresholds": [1e39]},
        "int_overflow": {"weights": [10**400]},
        "not_a_list": {"resets": 1.0},
    }.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({**record, **change}))
    return tmp_path


def _snapshot(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def _check(folder, args, code=1, needle=None):
    before = _snapshot(folder)
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (args, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if code == 1:
        assert len(lines) == 1, (args, result.stderr)
    assert "internal error" not in result.stderr and "Traceback" not in result.output, (args, result.output)
    if needle:
        assert needle in result.stderr, (args, result.stderr)
    assert _snapshot(folder) == before, f"{args} changed or left files"
    return result


BAD_MODELS = {
    "text.onnx": "not an ONNX model",
    "empty.onnx": "not an ONNX model",
    "truncated.onnx": None,
    "dir.onnx": "not a file",
    "nothing.onnx": "no such file",
    "escaping.onnx": None,
    "missing_data.onnx": None,
    "x" * 300 + ".onnx": "File name too long",  # the system refuses the path itself (ENAMETOOLONG)
}


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("model", sorted(BAD_MODELS), ids=lambda name: name[:20])
def test_bad_model_files(folder, command, model):
    args = [command, folder / model]
    if command in ("eval", "layers", "calibrate", "energy"):
        np.savez(folder / "data.npz", x=np.zeros((3, 4), np.float32), labels=np.zeros(3, np.int64))
        args += ["--data", folder / "data.npz"]
    if command == "rewrite":
        args += ["-o", folder / "out.onnx"]
    _check(folder, args, needle=BAD_MODELS[model])


@pytest.mark.parametrize("command", ["genai", "triton"])
@pytest.mark.parametrize("model", sorted(BAD_MODELS), ids=lambda name: name[:20])
def test_bad_model_files_for_the_deploy_commands(folder, command, model):
    target = folder / "target"
    target.mkdir(exist_ok=True)
    if command == "genai":
        (target / "genai_config.json").write_text('{"model": {"decoder": {"filename": "model.onnx"}}}')
        args = ["genai", folder / model, target, folder / "out"]
    else:
        args = ["triton", folder / model, target, "--name", "m"]
    _check(folder, args, needle=BAD_MODELS[model])


@pytest.mark.parametrize("model", sorted(BAD_MODELS), ids=lambda name: name[:20])
@pytest.mark.parametrize("side", ["reference", "candidate"])
def test_compare_names_the_bad_file(folder, model, side):
    pair = [folder / model, folder / "good.onnx"] if side == "reference" else [folder / "good.onnx", folder / model]
    result = _check(folder, ["compare", *pair])
    assert str(folder / model) in result.stderr


ARRAYS = {
    "single.npz": "single array",
    "wrong_name.npz": "lacks the model input 'x'",
    "wrong_rank.npz": "rank",
    "wrong_dtype.npz": "is int64",
    "wrong_dim.npz": "wants",
    "text.npz": "text.npz: not an .npz file (it does not start as a zip archive does)",
    "broken.npz": "broken.npz: not a readable .npz file (BadZipFile: File is not a zip file)",
    "objects.npz": "objects.npz: holds an object array (pickled Python objects), which is not read",
    "absent.npz": "no such file",
}


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("arrays", sorted(ARRAYS))
def test_bad_arrays(folder, command, arrays):
    models = [folder / "good.onnx"] * (2 if command == "compare" else 1)
    _check(folder, [command, *models, "--inputs", folder / arrays], needle=ARRAYS[arrays])


PARAMS = {
    "deep.json": "nested too deeply",
    "huge_int.json": "not a usable parameter file",
    "bad_meta.json": "meta must be an object",
    "bad_rmse.json": "rmse must be a number",
    "float32_overflow.json": "beyond float32",
    "int_overflow.json": "too large for a float",
    "not_a_list.json": "resets must be a list",
    "nothing.json": "not found",
}


@pytest.mark.parametrize("params", sorted(PARAMS))
@pytest.mark.parametrize("command", ["rewrite", "neuron show"])
def test_bad_parameter_sets(folder, params, command):
    args = (
        [*command.split(), "--params", folder / params]
        if command == "neuron show"
        else [
            "rewrite",
            folder / "good.onnx",
            "-o",
            folder / "out.onnx",
            "--params",
            folder / params,
        ]
    )
    _check(folder, args, needle=PARAMS[params])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["rewrite", "{f}/good.onnx", "-o", "{f}/no_such_dir/out.onnx"], "output folder does not exist"),
        (["rewrite", "{f}/good.onnx", "-o", "{f}/good.onnx", "--force"], "refusing to overwrite the input"),
        (["rewrite", "{f}/good.onnx", "-o", "{f}/" + "x" * 300 + ".onnx"], "File name too long"),
        (["run", "{f}/good.onnx", "--inputs", "{f}/" + "x" * 300 + ".npz"], "File name too long"),
        (["neuron", "fit", "-k", "4", "--iterations", "10", "-o", "{f}/" + "x" * 300 + ".json"], "File name too long"),
        (["triton", "{f}/good.onnx", "{f}", "--name", "x" * 300], "File name too long"),
        (["neuron", "fit", "-k", "4", "--range", "-1", "100", "-o", "{f}/p.json"], "overflows"),
        (["neuron", "fit", "-k", "4", "--range", "-1000", "1000", "-o", "{f}/p.json"], "too large"),
        (["neuron", "fit", "-k", "4", "--range", "-300", "0", "-o", "{f}/p.json"], "wider than"),
        # past what numpy can index: numpy's "Maximum allowed dimension exceeded" as an internal error
        (["run", "{f}/good.onnx", "--batch", str(10**20)], f"of shape [{10**20}, "),
        (["run", "{f}/good.onnx", "--batch", str(10**12)], "GiB; lower --batch (now 1000000000000)"),
    ],
)
def test_bad_paths_and_ranges(folder, args, needle):
    _check(folder, [a.format(f=folder) for a in args], needle=needle)


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "{f}/good.onnx", "{f}/good.onnx", "--atol", "nan"],
        ["compare", "{f}/good.onnx", "{f}/good.onnx", "--rtol", "-1"],
        ["rewrite", "{f}/good.onnx", "--time-steps", "-3"],
        ["run", "{f}/good.onnx", "--batch", "0"],
        ["rewrite", "{f}/good.onnx", "--time-steps", str(2**63)],  # past an int64 attribute: an internal error
        ["triton", "{f}/good.onnx", "{f}", "--max-batch", str(2**31)],  # past Triton's int32: a config it refuses
        ["triton", "{f}/good.onnx", "{f}", "--instances", str(2**31)],
        ["neuron", "fit", "--range", "1", "-1", "-o", "{f}/p.json"],
    ],
)
def test_malformed_command_lines_exit_2(folder, args):
    _check(folder, [a.format(f=folder) for a in args], code=2)


def test_mistyped_library_override_is_said(folder, monkeypatch):
    monkeypatch.setenv("SIT_ONNX_OPS_LIBRARY", str(folder / "libnope.so"))
    _check(folder, ["run", folder / "good.onnx"], needle="SIT_ONNX_OPS_LIBRARY=")
