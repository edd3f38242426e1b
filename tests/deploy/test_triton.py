"""`sit-onnx triton`: the config parses into Triton's own ModelConfig protobuf (tritonclient ships
its generated module) and every field matches the model; the entry runs in onnxruntime with the
library it ships; bad input is one line and leaves nothing behind."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.cli.triton import UNUSED_SERVER_REPO
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime.library import LIBRARY_NAME, get_library_path
from tests.helpers import softmax_model

tritonclient = pytest.importorskip("tritonclient", reason="tritonclient ships Triton's model_config.proto")
BUNDLED = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"


def model_config_class():
    """tritonclient.grpc's __init__ needs grpc; the generated module alone needs only protobuf."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def parse(folder: Path):
    module = model_config_class()
    return module, text_format.Parse((folder / "config.pbtxt").read_text(), module.ModelConfig())


@pytest.fixture
def converted(tmp_path):
    new, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions())
    path = tmp_path / "vit.sit.onnx"
    onnx.save(new, str(path))
    repo = tmp_path / "repo"
    repo.mkdir()
    return path, repo


def test_config_matches_the_model_and_the_entry_runs(converted):
    path, repo = converted
    result = invoke("triton", path, repo, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    folder = repo / "vit"
    assert record["name"] == "vit" and record["library"] is True and Path(record["folder"]) == folder
    pb, config = parse(folder)
    assert (config.name, config.backend, config.max_batch_size) == ("vit", "onnxruntime", 8)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("input", pb.TYPE_FP32, [1, 8, 8])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [("output", pb.TYPE_FP32, [10])]
    assert config.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, pb.ModelInstanceGroup.KIND_CPU)]
    library = folder / LIBRARY_NAME
    assert [p.name for p in (folder / "1").iterdir()] == ["model.onnx"]  # one file in, one file out
    assert list(config.model_operations.op_library_filename) == [str(library.resolve())]
    assert library.read_bytes() == Path(get_library_path()).read_bytes()
    # what the server does: register the shipped library, load version 1, run a batch
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 1, 8, 8)).astype(np.float32)
    reference = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"input": x})[0], reference.run(None, {"input": x})[0])


def test_flags_reach_the_config(converted):
    path, repo = converted
    args = ["--name", "spiking", "--max-batch", "0", "--device", "gpu", "--instances", "3", "--server-repo", "/models"]
    assert invoke("triton", path, repo, *args).exit_code == 0
    pb, config = parse(repo / "spiking")
    assert config.name == "spiking" and config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, 1, 8, 8]  # no batching: the full shape, -1 where dynamic
    assert [(g.count, g.kind) for g in config.instance_group] == [(3, pb.ModelInstanceGroup.KIND_GPU)]
    assert list(config.model_operations.op_library_filename) == [f"/models/spiking/{LIBRARY_NAME}"]


def test_no_library_and_models_without_spiking_ops_ship_none(converted, tmp_path):
    path, repo = converted
    record = json.loads(invoke("triton", path, repo, "--no-library", "--json").output)
    assert record["library"] is False
    _, config = parse(repo / "vit")
    assert not config.HasField("model_operations") and not (repo / "vit" / LIBRARY_NAME).exists()
    assert invoke("triton", BUNDLED, repo).exit_code == 0  # the original: no ai.sit op
    _, config = parse(repo / "vit_digits")
    assert not config.HasField("model_operations") and not (repo / "vit_digits" / LIBRARY_NAME).exists()


def test_server_repo_with_nothing_shipped_says_it_changes_nothing(converted, tmp_path):
    """--server-repo only places shipped libraries' paths; with none shipped the user hears so."""
    path, repo = converted
    result = invoke("triton", path, repo, "--no-library", "--server-repo", "/models")
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "note: " + UNUSED_SERVER_REPO
    record = json.loads(invoke("triton", path, repo, "--no-library", "--server-repo", "/m", "--force", "--json").output)
    assert record["notes"] == [UNUSED_SERVER_REPO]
    # with the library shipped, or without the flag, no note
    shipped = invoke("triton", path, repo, "--server-repo", "/models", "--force")
    assert shipped.exit_code == 0 and "note" not in shipped.output
    assert json.loads(invoke("triton", path, repo, "--no-library", "--force", "--json").output)["notes"] == []
    other = tmp_path / "libother.so"  # another library shipped: --server-repo places its path
    shutil.copyfile(get_library_path(), other)
    given = invoke("triton", path, repo, "--no-library", "--op-library", other, "--server-repo", "/m", "--force")
    assert given.exit_code == 0 and "note" not in given.output
    assert list(parse(repo / "vit")[1].model_operations.op_library_filename) == ["/m/vit/libother.so"]


def test_a_converted_model_the_kernels_would_refuse_is_not_shipped(converted, tmp_path):
    """The server would fail to load it, with the library or on the function bodies: named here, in
    one line, and no entry written."""
    path, repo = converted
    bad = onnx.load(str(path))
    node = next(n for n in bad.graph.node if n.op_type == "SpikingSoftmax")
    next(a for a in node.attribute if a.name == "thresholds").floats[0] = float("nan")
    bad_path = tmp_path / "bad.sit.onnx"
    onnx.save(bad, str(bad_path))
    result = invoke("triton", bad_path, repo, "--no-library")
    assert result.exit_code == 1 and not (repo / "bad").exists()
    expected = f"Error: {bad_path}: SpikingSoftmax node '{node.name}': step 0 holds a NaN or infinite value"
    assert result.stderr.strip() == expected


def test_types_and_dynamic_dims(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT16), helper.make_node("Softmax", ["f"], ["p"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq", 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT16, ["batch", "seq", 4])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    (tmp_path / "repo").mkdir()
    assert invoke("triton", path, tmp_path / "repo").exit_code == 0
    pb, config = parse(tmp_path / "repo" / "m")
    assert (config.input[0].data_type, list(config.input[0].dims)) == (pb.TYPE_INT64, [-1, 4])
    assert (config.output[0].data_type, list(config.output[0].dims)) == (pb.TYPE_FP16, [-1, 4])


def one_line(result, text):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and text in result.output and len(result.output.splitlines()) == 1


def test_existing_entry_needs_force_and_force_replaces_it(converted):
    path, repo = converted
    assert invoke("triton", path, repo).exit_code == 0
    (repo / "vit" / "stale.txt").write_text("old")
    one_line(
        invoke("triton", path, repo),
        f"Error: {repo / 'vit'} exists (use --force, or force=True from Python, to replace it)",
    )
    assert (repo / "vit" / "stale.txt").exists()
    assert invoke("triton", path, repo, "--force", "--max-batch", "2").exit_code == 0
    assert not (repo / "vit" / "stale.txt").exists() and parse(repo / "vit")[1].max_batch_size == 2
    assert sorted(p.name for p in repo.iterdir()) == ["vit"]  # nothing staged or set aside is left


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", ".", "a\\b"])
def test_bad_names(converted, name):
    path, repo = converted
    one_line(invoke("triton", path, repo, "--name", name), "must be a plain folder name")


def test_fixed_batch_dimension_needs_max_batch_zero(tmp_path):
    path = tmp_path / "fixed.onnx"
    onnx.save(softmax_model([2, 5], -1), str(path))
    (tmp_path / "repo").mkdir()
    one_line(
        invoke("triton", path, tmp_path / "repo"), "has shape [2, 5]: batching (--max-batch 8) needs a dynamic first"
    )
    one_line(invoke("triton", path, tmp_path / "repo", "--max-batch", "1"), "input 'x' has shape [2, 5]")
    assert list((tmp_path / "repo").iterdir()) == []
    assert invoke("triton", path, tmp_path / "repo", "--max-batch", "0").exit_code == 0
    assert list(parse(tmp_path / "repo" / "fixed")[1].input[0].dims) == [2, 5]


def test_missing_repository_and_model(converted, tmp_path):
    path, _ = converted
    one_line(invoke("triton", path, tmp_path / "nowhere"), "no such folder")
    one_line(invoke("triton", tmp_path / "none.onnx", tmp_path), "none.onnx")


@pytest.mark.parametrize(
    "value, text",
    [
        (helper.make_tensor_value_info("x", TensorProto.FLOAT, []), "is a scalar"),
        (
            helper.make_tensor_value_info("x", TensorProto.FLOAT, []),
            "input 'x' has shape scalar: batching (--max-batch 8)",
        ),
        (helper.make_tensor_value_info("x", TensorProto.FLOAT, None), "has no shape"),
        (helper.make_tensor_value_info("x", TensorProto.COMPLEX64, ["n", 2]), "tensors of numbers, bools or strings"),
        (helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, ["n"]), "tensors of numbers, bools or strings"),
    ],
)
def test_inputs_triton_cannot_describe(tmp_path, value, text):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g", [value], [helper.make_tensor_value_info("y", 0, None)]
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    one_line(invoke("triton", path, tmp_path, "--max-batch", "8" if "batching" in text else "0"), text)
    assert not (tmp_path / "m").exists()


def two_io_model(path, output_shape=("n", 3)):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Neg", ["s"], ["t"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, list(output_shape))],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_several_inputs_and_outputs_and_a_batch_of_one(tmp_path):
    two_io_model(tmp_path / "two.onnx")
    assert invoke("triton", tmp_path / "two.onnx", tmp_path, "--max-batch", "1").exit_code == 0
    _, config = parse(tmp_path / "two")
    assert config.max_batch_size == 1 and [list(i.dims) for i in config.input] == [[3], [3]]
    assert config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == ["a", "b"] and [o.name for o in config.output] == ["s", "t"]


def test_an_output_without_a_batch_dimension_is_named(tmp_path):
    two_io_model(tmp_path / "two.onnx", output_shape=(4, 3))
    one_line(invoke("triton", tmp_path / "two.onnx", tmp_path), "output 't' has shape [4, 3]")


def test_spiking_ops_inside_a_subgraph_ship_the_library(tmp_path):
    inner = helper.make_graph(
        [helper.make_node("SpikingNorm", ["x"], ["y"], domain="ai.sit")],
        "branch",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["out"], then_branch=inner, else_branch=inner)],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, [1]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)])
    onnx.save(model, str(tmp_path / "sub.onnx"))
    assert invoke("triton", tmp_path / "sub.onnx", tmp_path, "--max-batch", "0").exit_code == 0
    assert parse(tmp_path / "sub")[1].HasField("model_operations") and (tmp_path / "sub" / LIBRARY_NAME).is_file()
    # declared but unused: no library
    unused = helper.make_model(
        helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)],
    )  # fmt: skip
    onnx.save(unused, str(tmp_path / "unused.onnx"))
    assert invoke("triton", tmp_path / "unused.onnx", tmp_path, "--max-batch", "0").exit_code == 0
    assert not parse(tmp_path / "unused")[1].HasField("model_operations")


def test_external_data_travels_with_the_model(tmp_path):
    from tests.cli.test_external_data import _model, _save_external

    path = tmp_path / "src" / "ext.onnx"
    _save_external(_model(np.random.default_rng(0)), path, "weights.bin")
    repo = tmp_path / "repo"
    repo.mkdir()
    assert invoke("triton", path, repo, "--max-batch", "0", "--name", "ext").exit_code == 0
    files = sorted(p.name for p in (repo / "ext" / "1").iterdir())
    assert files == ["model.onnx", "model.onnx.data"]
    loaded = onnx.load(str(repo / "ext" / "1" / "model.onnx"))
    original = onnx.load(str(path))
    assert [onnx.numpy_helper.to_array(t).tolist() for t in loaded.graph.initializer] == [
        onnx.numpy_helper.to_array(t).tolist() for t in original.graph.initializer
    ]


def test_spiking_ops_inside_a_local_function_ship_the_library(tmp_path):
    function = helper.make_function(
        "local", "Wrapped", ["x"], ["y"], [helper.make_node("SpikingNorm", ["x"], ["y"], domain="ai.sit")],
        [helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Wrapped", ["x"], ["y"], domain="local")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1), helper.make_opsetid("ai.sit", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, functions=[function]), str(tmp_path / "fn.onnx"))
    assert invoke("triton", tmp_path / "fn.onnx", tmp_path).exit_code == 0
    assert parse(tmp_path / "fn")[1].HasField("model_operations")


def test_api_refuses_an_existing_entry_by_default_and_gives_the_usual_mode(converted):
    import os

    from sit_onnx.atomic import umask
    from sit_onnx.deploy.triton import TritonOptions, write_repository
    from sit_onnx.errors import SitOnnxError

    path, repo = converted
    folder = write_repository(path, repo, TritonOptions("vit"))
    assert folder == repo / "vit" and (os.stat(folder).st_mode & 0o777) == 0o777 & ~umask()
    with pytest.raises(SitOnnxError, match="exists"):
        write_repository(path, repo, TritonOptions("vit"))


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("max_batch_size", 2**31, "TritonOptions.max_batch_size must be an int in [0, 2147483647], got 2147483648"),
        ("max_batch_size", -1, "TritonOptions.max_batch_size must be an int in [0, 2147483647], got -1"),
        ("max_batch_size", 8.0, "TritonOptions.max_batch_size must be an int in [0, 2147483647], got 8.0"),
        ("max_batch_size", True, "TritonOptions.max_batch_size must be an int in [0, 2147483647], got True"),
        ("instances", 0, "TritonOptions.instances must be an int in [1, 2147483647], got 0"),
        ("instances", 2**31, "TritonOptions.instances must be an int in [1, 2147483647], got 2147483648"),
        ("device", "tpu", "TritonOptions.device must be one of cpu, gpu, got 'tpu'"),
    ],
)
def test_api_refuses_counts_triton_cannot_hold_and_writes_nothing(converted, field, value, said):
    """The CLI's ranges, for options built in Python: max_batch_size 2**31 had been written into a
    config Triton refuses (it holds it in an int32)."""
    from sit_onnx.deploy.triton import TritonOptions, write_repository
    from sit_onnx.errors import SitOnnxError

    path, repo = converted
    with pytest.raises(SitOnnxError) as caught:
        write_repository(path, repo, TritonOptions("vit", **{field: value}))
    assert str(caught.value) == said
    assert not (repo / "vit").exists()
    assert write_repository(path, repo, TritonOptions("vit", max_batch_size=2**31 - 1, instances=2**31 - 1)).is_dir()
