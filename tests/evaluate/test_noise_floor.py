"""compare --noise-floor: the candidate with its SpikingSoftmax sites put back as the exact softmax
rounded to float16, run beside the comparison to show how far the model moves from rounding alone."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.domain import DOMAIN, SPIKING_SOFTMAX
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.noise_floor import rounded_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.save import save_model
from sit_onnx.graph.walk import graph_protos
from sit_onnx.neurons import softmax
from tests.helpers import run, softmax_model


def _ops(model):
    return [(n.domain, n.op_type) for g in graph_protos(model.graph) for n in g.node]


@pytest.mark.parametrize("opset, back", [(13, "Cast"), (14, "Cast"), (15, "CastLike"), (17, "CastLike")])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_floor_is_the_exact_softmax_rounded_to_float16(opset, back, axis):
    converted, _ = rewrite_model(softmax_model([3, 5], axis, opset=opset), RewriteOptions())
    floor = rounded_attention(converted)
    assert [op for domain, op in _ops(floor)] == ["Softmax", "Cast", back]
    assert not any(domain == DOMAIN for domain, _ in _ops(floor))
    site = converted.graph.node[0].name  # each node named after the site it stands for (profiles, errors)
    ends = ["floor_softmax", "floor_round", "floor_castlike" if back == "CastLike" else "floor_cast_back"]
    assert [n.name for n in floor.graph.node] == [f"{site}/{end}" for end in ends] and site
    x = np.random.default_rng(opset).normal(0, 3, (3, 5)).astype(np.float32)
    got = run(floor, {"x": x})[0]
    exact = softmax(x.astype(np.float64), axis)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, got.astype(np.float16).astype(np.float32))  # rounded to float16
    np.testing.assert_allclose(got, exact, rtol=2.0**-11, atol=1e-7)  # and no further
    assert np.abs(got - exact).max() > 0  # the rounding shows (not the exact float32 softmax)


@pytest.mark.parametrize("opset", [11, 17])
def test_floor_of_a_node_without_axis_takes_the_contracts_default(opset):
    """SpikingSoftmax's axis defaults to -1 (the op contract), whatever Softmax's default at the opset."""
    converted, _ = rewrite_model(softmax_model([2, 3, 4], -1, opset=opset), RewriteOptions())
    (node,) = [n for n in converted.graph.node if n.op_type == SPIKING_SOFTMAX]
    node.attribute.remove(next(a for a in node.attribute if a.name == "axis"))
    x = np.random.default_rng(4).normal(0, 3, (2, 3, 4)).astype(np.float32)
    got = run(rounded_attention(converted), {"x": x})[0]
    np.testing.assert_allclose(got, softmax(x.astype(np.float64), -1), rtol=2.0**-11, atol=1e-7)


def test_floor_keeps_a_float16_model_in_float16():
    converted, _ = rewrite_model(softmax_model([2, 6], -1, dtype=TensorProto.FLOAT16), RewriteOptions())
    x = np.random.default_rng(1).normal(0, 2, (2, 6)).astype(np.float16)
    got = run(rounded_attention(converted), {"x": x})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, softmax(x.astype(np.float64), -1), atol=2e-3)


def test_floor_replaces_sites_inside_subgraphs():
    site = helper.make_node("SpikingSoftmax", ["x"], ["p"], name="inner", domain=DOMAIN, axis=-1)
    branch = helper.make_graph([site], "then", [], [helper.make_tensor_value_info("p", TensorProto.FLOAT, [2])])
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["q"])],
        "else",
        [],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    floor = rounded_attention(model)
    assert ("", "Softmax") in _ops(floor) and not any(domain == DOMAIN for domain, _ in _ops(floor))
    then = next(a.g for a in model.graph.node[0].attribute if a.name == "then_branch")
    assert then.node[0].op_type == SPIKING_SOFTMAX  # the candidate is left as it was
    got = run(floor, {"c": np.array(True), "x": np.array([0.0, 1.0], np.float32)})[0]
    np.testing.assert_allclose(got, softmax(np.array([0.0, 1.0]), -1), rtol=2.0**-11)


@pytest.mark.parametrize(
    "options, found",
    [
        (RewriteOptions(fuse=False), "holds SpikingExp"),
        (RewriteOptions(activations=("sigmoid",)), "holds SpikingActivation"),
    ],
)
def test_floor_refuses_neurons_without_an_exact_twin(options, found):
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["p"], axis=-1), helper.make_node("Sigmoid", ["p"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    converted, _ = rewrite_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), options)
    tail = r"; the floor puts back fused SpikingSoftmax sites only \(rewrite with the default --fuse and no "
    tail += r"--activations\)$"
    with pytest.raises(SitOnnxError, match=rf"^--noise-floor: new.onnx {found} \(\S+\){tail}"):
        rounded_attention(converted, "new.onnx")
    for node in converted.graph.node:
        node.name = ""
    with pytest.raises(SitOnnxError, match=rf"^--noise-floor: new.onnx {found} \(unnamed\){tail}"):
        rounded_attention(converted, "new.onnx")


def test_floor_refuses_a_model_that_was_not_converted():
    with pytest.raises(SitOnnxError, match="--noise-floor: candidate holds no SpikingSoftmax node"):
        rounded_attention(softmax_model([2, 3], -1))


def _classifier(tmp_path, external=False):
    """logits = softmax(x @ w) @ v with 16 KB of weights in w: with `external`, the converted model keeps
    them in b.onnx.data, so its floor is read with its data."""
    rng = np.random.default_rng(3)
    w, v = rng.normal(0, 1.0, (8, 512)).astype(np.float32), rng.normal(size=(512, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["s"]),
            helper.make_node("Softmax", ["s"], ["p"], axis=-1),
            helper.make_node("MatMul", ["p", "v"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(v, "v")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    source, target, data = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "x.npz"
    onnx.save(model, str(source))
    save_model(rewrite_model(model, RewriteOptions())[0], target, external=external)
    assert (tmp_path / "b.onnx.data").exists() == external
    np.savez(data, x=rng.normal(size=(64, 8)).astype(np.float32))
    return source, target, data


def _softmax_then(tmp_path, stem, nodes, output, rows):
    """Softmax of x [n, 16] into p, then `nodes` (which may read a gain of 3e4), saved with its
    conversion and `rows` rows of inputs."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["p"], axis=-1), *nodes],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [output],
        [numpy_helper.from_array(np.array(3e4, np.float32), "gain")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    source, target, data = (tmp_path / f"{stem}{suffix}" for suffix in (".onnx", ".sit.onnx", ".npz"))
    onnx.save(model, str(source))
    onnx.save(rewrite_model(model, RewriteOptions())[0], str(target))
    np.savez(data, x=np.random.default_rng(0).normal(0, 2, (rows, 16)).astype(np.float32))
    return source, target, data


def _sensitive(tmp_path):
    """Softmax weights through Sin(3e4 p): a change of 2^-11 of a weight turns its phase by radians."""
    nodes = [helper.make_node("Mul", ["p", "gain"], ["g"]), helper.make_node("Sin", ["g"], ["y"])]
    return _softmax_then(tmp_path, "s", nodes, helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16]), 32)


@pytest.mark.parametrize("external", [False, True])
def test_compare_noise_floor_of_a_sound_model(tmp_path, external):
    source, target, data = _classifier(tmp_path, external=external)
    args = ["compare", str(source), str(target), "--inputs", str(data), "--min-margin", "0.01"]  # one near-tie
    plain, floored = CliRunner().invoke(main, args), CliRunner().invoke(main, [*args, "--noise-floor"])
    assert plain.exit_code == floored.exit_code == 0, floored.output
    assert "noise floor" not in plain.output
    line = next(s for s in floored.output.splitlines() if "noise floor" in s)
    assert line.startswith("    noise floor (attention weights rounded to float16): cosine 1.0000")
    assert "argmax agreement 100.00%" in line and "no conversion meets" not in floored.output
    record = json.loads(CliRunner().invoke(main, [*args, "--noise-floor", "--json"]).stdout)
    floor = record["noise_floor"]["outputs"]["logits"]
    assert record["noise_floor"]["precision"] == "float16" and floor["agreement"] == 1.0
    assert record["outputs"][0]["cosine"] < floor["cosine"] <= 1.0 and 0 < floor["max_abs"] < 1e-3
    assert json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)["noise_floor"] is None


def test_compare_noise_floor_of_a_model_that_amplifies_rounding(tmp_path):
    source, target, data = _sensitive(tmp_path)
    args = ["compare", str(source), str(target), "--inputs", str(data)]
    floored = CliRunner().invoke(main, [*args, "--noise-floor"])
    assert floored.exit_code == CliRunner().invoke(main, args).exit_code == 1  # the verdict is not changed
    assert "no conversion meets this check here" in floored.output
    record = json.loads(CliRunner().invoke(main, [*args, "--noise-floor", "--json"]).stdout)
    assert record["noise_floor"]["outputs"]["y"]["cosine"] < 0.99 and not record["passed"]
    strict = CliRunner().invoke(main, [*args, "--noise-floor", "--atol", "10"])
    assert strict.exit_code == 0 and "noise floor" in strict.output and "no conversion meets" not in strict.output
    loose = CliRunner().invoke(main, [*args, "--noise-floor", "--min-cosine", "-1", "--min-agreement", "0"])
    assert loose.exit_code == 0 and "no conversion meets" not in loose.output


def test_compare_noise_floor_of_an_unconverted_candidate_is_one_line(tmp_path):
    source, _, data = _classifier(tmp_path)
    result = CliRunner().invoke(main, ["compare", str(source), str(source), "--inputs", str(data), "--noise-floor"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --noise-floor: {source} holds no SpikingSoftmax node "
        "(is it a sit-onnx rewrite, written without --inline?)"
    )


def test_floor_line_of_an_embedding_leaves_its_argmax_out():
    from sit_onnx.cli.compare import _floor_line
    from sit_onnx.evaluate.compare import compare_arrays

    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    head = "    noise floor (attention weights rounded to float16): cosine 1.000000"
    assert _floor_line(compare_arrays("text_embeds", a, a + 1e-4, 0, 0), 0.999, 0.99, False) == (
        f"{head}, max abs error 0.0001"
    )
    assert _floor_line(compare_arrays("logits", a, a + 1e-4, 0, 0), 0.999, 0.99, False) == (
        f"{head}, argmax agreement 100.00%, max abs error 0.0001"
    )
    one_row = _floor_line(compare_arrays("logits", a[0], a[0], 0, 0), 0.999, 0.99, False)  # no rows: no argmax
    assert one_row == f"{head}, max abs error 0"
    far = _floor_line(compare_arrays("logits", a, a[:, ::-1], 0, 0), 0.999, 0.99, strict=False)
    hint = "\n    the reference moves that far from the rounding alone: no conversion meets this check here"
    assert far == (
        "    noise floor (attention weights rounded to float16): cosine 0.714286, argmax agreement 0.00%, "
        "max abs error 2" + hint
    )


def test_floor_through_a_folder_when_it_is_too_large_for_one_protobuf(tmp_path, monkeypatch):
    import tempfile

    import sit_onnx.evaluate.noise_floor as noise_floor
    import sit_onnx.evaluate.seeding as seeding

    _, target, data = _classifier(tmp_path)
    feeds = {"x": np.load(data)["x"]}
    direct = noise_floor.floor_outputs(target, "cpu", feeds)
    monkeypatch.setattr(seeding, "needs_external_data", lambda model: True)
    saved = []
    monkeypatch.setattr(
        seeding,
        "save_model",
        lambda model, path, external: saved.append((path, external)) or save_model(model, path, external=external),
    )
    before = set(Path(tempfile.gettempdir()).glob("sit-onnx-session-*"))
    folded = noise_floor.floor_outputs(target, "cpu", feeds)
    np.testing.assert_array_equal(folded["logits"], direct["logits"])
    ((path, external),) = saved
    assert path.name == "model.onnx" and path.parent.name.startswith("sit-onnx-session-") and external is True
    assert set(Path(tempfile.gettempdir()).glob("sit-onnx-session-*")) == before  # the folder is gone


def test_a_floor_that_cannot_run_is_named(tmp_path):
    import sit_onnx.evaluate.noise_floor as noise_floor

    _, target, _ = _classifier(tmp_path)
    with pytest.raises(SitOnnxError, match=r"b\.onnx \(noise floor\): onnxruntime failed to run the model"):
        noise_floor.floor_outputs(target, "cpu", {"x": np.zeros((2, 5), np.float32)})  # 5 features, not 8


def test_a_floor_whose_shape_moves_says_so(tmp_path):
    """A length read from a softmax weight (a TTS duration predictor's kind): the rounding alone
    changes the output's shape, and the floor line says so (it printed cosine nan before), also where
    the candidate's own shape differs."""
    one = numpy_helper.from_array(np.array([1.0], np.float32))
    nodes = [
        helper.make_node("ReduceMax", ["p"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["m", "gain"], ["g"]),
        helper.make_node("Floor", ["g"], ["f"]),
        helper.make_node("Cast", ["f"], ["length"], to=TensorProto.INT64),
        helper.make_node("ConstantOfShape", ["length"], ["y"], value=one),
    ]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["length"])
    source, target, data = _softmax_then(tmp_path, "d", nodes, output, 1)
    args = ["compare", str(source), str(target), "--inputs", str(data), "--noise-floor"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "nan" not in result.output
    lines = result.output.splitlines()
    assert lines[1].startswith("    shapes differ: [")
    floor = next(i for i, s in enumerate(lines) if "noise floor" in s)
    assert lines[floor].startswith("    noise floor (attention weights rounded to float16): shapes differ: [")
    assert lines[floor + 1] == (
        "    the reference changes that much from the rounding alone: no conversion meets any check here"
    )
    record = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)["noise_floor"]["outputs"]["y"]
    assert record["problem"].startswith("shapes differ: [") and record["cosine"] is None
