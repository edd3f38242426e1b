"""Models holding other custom ops (onnxruntime-extensions' tokenizers in end-to-end models, a
vendor's kernels) run in every command: onnxruntime-extensions' library is registered where a
model needs it and the package is installed, other libraries are given with `--op-library` or
SIT_ONNX_OP_LIBRARIES, and a missing one is named in the load error with the way out."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import sit_onnx.runtime.session as session_module
from sit_onnx.cli import main
from sit_onnx.runtime.op_libraries import op_libraries, unknown_op

extensions = pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is a dev dependency")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "the", "cat", "sat", "on", "mat", "a", "dog"]
HINT = (
    "ai.onnx.contrib::BertTokenizer is an onnxruntime-extensions op: install onnxruntime-extensions "
    "(then its library is registered by itself) or pass it with --op-library"
)


def _end_to_end(tmp_path):
    """Text in, tokenised in the graph by onnxruntime-extensions' BertTokenizer, then one softmax
    attention over the token embeddings; saved with its conversion and a sentence to feed."""
    embeddings = np.random.default_rng(0).normal(0, 1, (len(VOCAB), 8)).astype(np.float32)
    nodes = [
        helper.make_node(
            "BertTokenizer", ["text"], ["ids", "types", "mask"], domain="ai.onnx.contrib", vocab_file="\n".join(VOCAB)
        ),
        helper.make_node("Gather", ["embeddings", "ids"], ["h"]),
        helper.make_node("Transpose", ["h"], ["h_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["h", "h_t"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["weights"], axis=-1, name="attention"),
        helper.make_node("MatMul", ["weights", "h"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "e2e",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", 8])],
        [numpy_helper.from_array(embeddings, "embeddings")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)]
    source, target, data = tmp_path / "e2e.onnx", tmp_path / "e2e.sit.onnx", tmp_path / "text.npz"
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(source))
    result = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(target)])
    assert result.exit_code == 0 and "1 of 1 softmax sites converted" in result.output, result.output
    np.savez(data, text=np.array(["hello the cat sat on the mat with a dog"]))
    return source, target, data


@pytest.fixture
def no_extensions(monkeypatch):
    """As on a machine without onnxruntime-extensions."""
    import sit_onnx.runtime.op_libraries as op_libraries_module

    monkeypatch.setattr(session_module, "extensions_library", lambda: None)
    monkeypatch.setattr(op_libraries_module, "extensions_library", lambda: None)
    monkeypatch.setattr(op_libraries_module, "_extensions_version", lambda: None)


def _compare(source, target, data, *extra, env=None):
    return CliRunner().invoke(main, ["compare", str(source), str(target), "--inputs", str(data), *extra], env=env)


def test_an_extensions_op_runs_where_the_package_is_installed(tmp_path):
    source, target, data = _end_to_end(tmp_path)
    compared = _compare(source, target, data)
    assert compared.exit_code == 0 and compared.output.splitlines()[-1].startswith("PASSED"), compared.output
    ran = CliRunner().invoke(main, ["run", str(target), "--inputs", str(data)])
    assert ran.exit_code == 0 and "ran on CPUExecutionProvider" in ran.output, ran.output
    generated = CliRunner().invoke(main, ["compare", str(source), str(target)])  # sentences made up for it
    assert generated.exit_code == 0 and generated.output.startswith("generated inputs: text [1] English sentences\n")


def test_without_the_package_the_error_names_the_op_and_the_way_out(tmp_path, no_extensions):
    source, target, data = _end_to_end(tmp_path)
    result = _compare(source, target, data)
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {source}: onnxruntime cannot load the model: ") and line.endswith(f"; {HINT}")


def test_a_library_given_with_the_option_holds_for_that_invocation_only(tmp_path, no_extensions):
    source, target, data = _end_to_end(tmp_path)
    library = extensions.get_library_path()
    given = _compare(source, target, data, "--op-library", library, "--op-library", library)  # twice: once
    assert given.exit_code == 0 and "PASSED" in given.output, given.output
    assert op_libraries() == ()  # nor is the process after it (the Python API, a command without the option)
    assert _compare(source, target, data).exit_code == 1  # the next invocation is not given it


def test_a_library_given_by_the_environment(tmp_path, no_extensions):
    source, target, data = _end_to_end(tmp_path)
    given = _compare(source, target, data, env={"SIT_ONNX_OP_LIBRARIES": extensions.get_library_path()})
    assert given.exit_code == 0 and "PASSED" in given.output, given.output
    joined = f"{extensions.get_library_path()}:{extensions.get_library_path()}"  # the OS path separator
    assert _compare(source, target, data, env={"SIT_ONNX_OP_LIBRARIES": joined}).exit_code == 0
    nope = tmp_path / "nope.so"
    missing = _compare(source, target, data, env={"SIT_ONNX_OP_LIBRARIES": str(nope)})
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines()[-1] == f"Error: SIT_ONNX_OP_LIBRARIES {nope}: no such file"


def test_a_file_that_is_no_library_is_refused_in_one_line(tmp_path):
    source, target, data = _end_to_end(tmp_path)
    result = _compare(source, target, data, "--op-library", str(data))
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {data}: not a loadable custom-op library (") and "invalid ELF header" in line
    absent = _compare(source, target, data, "--op-library", str(tmp_path / "absent.so"))
    assert absent.exit_code == 2 and "does not exist" in absent.output  # click's own check of the path


def _one_op(path, op: str, domain: str):
    """A model of one float op of a custom domain, saved at `path`."""
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], domain=domain)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def test_a_vendor_op_no_library_implements_is_named(tmp_path):
    path = _one_op(tmp_path / "vendor.onnx", "Foo", "com.vendor")
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith("; com.vendor::Foo is a custom op: pass the library that implements it with --op-library")
    )


def test_unknown_op_reads_onnxruntimes_words():
    assert unknown_op("FAIL : Fatal error: ai.onnx.contrib:BertTokenizer(-1) is not a registered function/op") == (
        "ai.onnx.contrib",
        "BertTokenizer",
    )
    assert unknown_op("Fatal error: com.vendor:Foo(3) is not a registered function/op") == ("com.vendor", "Foo")
    assert unknown_op("Could not find an implementation for Mul(14) node with name ''") is None


@pytest.mark.parametrize("command", ["run", "compare", "eval", "layers", "calibrate", "energy", "rewrite"])
def test_every_command_that_runs_a_model_takes_the_option(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "--op-library" in result.output


def test_a_missing_library_given_through_the_api_names_the_option(tmp_path):
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.runtime.op_libraries import given_libraries

    with given_libraries((str(tmp_path / "gone.so"),)), pytest.raises(SitOnnxError) as raised:
        op_libraries()
    assert str(raised.value) == f"--op-library {tmp_path / 'gone.so'}: no such file"


def test_after_onnxruntime_extensions_the_next_missing_op_is_named(tmp_path):
    """The retry with onnxruntime-extensions' library fails on a vendor op further on: that op is named."""
    source, _, _ = _end_to_end(tmp_path)
    model = onnx.load(str(source))
    model.graph.node.append(helper.make_node("Foo", ["y"], ["z"], domain="com.vendor"))
    model.opset_import.append(helper.make_opsetid("com.vendor", 1))
    mixed = tmp_path / "mixed.onnx"
    onnx.save(model, str(mixed))
    result = CliRunner().invoke(main, ["run", str(mixed), "--inputs", str(tmp_path / "text.npz")])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith("com.vendor::Foo is a custom op: pass the library that implements it with --op-library")
    )


def test_a_load_failure_of_another_kind_gets_no_hint(tmp_path):
    import onnxruntime as ort

    from sit_onnx.errors import first_line

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT32, [2])],  # no Softmax kernel takes int32
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2])],
    )
    path = tmp_path / "int.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(Exception) as raised:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result = CliRunner().invoke(main, ["run", str(path), "--no-library"])
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {path}: onnxruntime cannot load the model: {first_line(raised.value)}"
    )


def _triton(target, repo, *extra):
    return CliRunner().invoke(main, ["triton", str(target), str(repo), "--max-batch", "0", "--json", *extra])


def test_a_triton_entry_ships_every_library_the_model_needs(tmp_path):
    from tests.deploy.test_triton import parse

    _, target, data = _end_to_end(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    result = _triton(target, repo)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    extension_name = Path(extensions.get_library_path()).name
    assert record["library"] is True and record["other_libraries"] == [extension_name]
    folder = repo / "e2e"
    _, config = parse(folder)
    listed = list(config.model_operations.op_library_filename)
    assert listed == [str((folder / "libsit_onnx_ops.so").resolve()), str((folder / extension_name).resolve())]
    # what the server does: register every listed library, load version 1, run it
    options = ort.SessionOptions()
    for library in listed:
        options.register_custom_ops_library(library)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    text = dict(np.load(data))
    assert session.run(None, text)[0].shape[1] == 8


def test_onnxruntime_extensions_given_and_found_ships_once(tmp_path):
    _, target, _ = _end_to_end(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    result = _triton(target, repo, "--op-library", extensions.get_library_path())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["other_libraries"] == [Path(extensions.get_library_path()).name]


def test_a_triton_entry_ships_a_library_given_with_the_option(tmp_path, no_extensions):
    _, target, _ = _end_to_end(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    assert json.loads(_triton(target, repo).stdout)["other_libraries"] == []  # none found: none shipped
    given = _triton(target, repo, "--force", "--op-library", extensions.get_library_path())
    assert json.loads(given.stdout)["other_libraries"] == [Path(extensions.get_library_path()).name]
    args = [
        "triton",
        str(target),
        str(repo),
        "--max-batch",
        "0",
        "--force",
        "--op-library",
        extensions.get_library_path(),
    ]
    text = CliRunner().invoke(main, args)
    name = Path(extensions.get_library_path()).name
    assert text.output.startswith(f"{repo / 'e2e'}: config.pbtxt, 1/model.onnx, the custom-op library, {name} (")


def test_two_libraries_of_one_name_are_refused_and_nothing_is_written(tmp_path):
    import shutil

    _, target, _ = _end_to_end(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    copies = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        copies.append(shutil.copy(extensions.get_library_path(), tmp_path / folder / "ops.so"))
    result = _triton(target, repo, "--op-library", copies[0], "--op-library", copies[1])
    assert result.exit_code == 1 and not (repo / "e2e").exists()
    assert result.output.strip().splitlines()[-1] == (
        f"Error: two custom-op libraries named ops.so ({copies[0]}, {copies[1]}): rename one"
    )


def test_an_op_the_given_extensions_library_lacks_is_named(tmp_path):
    """An ai.onnx.contrib op the registered onnxruntime-extensions library does not implement: the
    library is not registered a second time (onnxruntime then fails on conflicting kernels), and the
    op is named."""
    path = _one_op(tmp_path / "newer.onnx", "NoSuchOp", "ai.onnx.contrib")
    for given in ([], ["--op-library", extensions.get_library_path()]):
        result = CliRunner().invoke(main, ["run", str(path), *given])
        line = result.output.strip().splitlines()[-1]
        assert result.exit_code == 1 and "Conflicting" not in line, line
        assert line.endswith(
            f"ai.onnx.contrib::NoSuchOp is not in the installed onnxruntime-extensions {extensions.__version__}: "
            "a newer version may implement it, or pass a library that does with --op-library"
        )
