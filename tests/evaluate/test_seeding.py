"""Models that draw random numbers (a VITS voice's RandomNormalLike noise) are compared run for run:
every unseeded random op is seeded from its output's name, so the reference, the candidate and the
noise floor draw the same noise whatever else their graphs hold. Unseeded, onnxruntime seeds its
kernels by creation order: a candidate with more nodes (the chain form) or the floor drew other noise."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.evaluate.seeding import describe_random_ops, seed_random_ops, unseeded_random_ops


def _noisy(tmp_path, chain):
    """softmax(x) plus noise drawn like it (RandomNormalLike, no seed), scaled by 0.5."""
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["p"], axis=-1, name="attention"),
            helper.make_node("RandomNormalLike", ["p"], ["noise"], name="draw"),
            helper.make_node("Mul", ["noise", "half"], ["scaled"]),
            helper.make_node("Add", ["p", "scaled"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")],
    )
    source, target = tmp_path / "noisy.onnx", tmp_path / "noisy.sit.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    result = CliRunner().invoke(main, ["rewrite", str(source), "-o", str(target), *(["--chain"] if chain else [])])
    assert result.exit_code == 0, result.output
    return source, target


@pytest.mark.parametrize("chain", [False, True])
def test_compare_draws_the_same_noise_in_both_models(tmp_path, chain):
    source, target = _noisy(tmp_path, chain)
    result = CliRunner().invoke(main, ["compare", str(source), str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == (
        "random ops seeded alike in both models (1 RandomNormalLike): one draw of their noise"
    )
    record = json.loads(CliRunner().invoke(main, ["compare", str(source), str(target), "--json"]).stdout)
    assert record["seeded_random_ops"] == 1 and record["outputs"][0]["cosine"] > 0.9999
    assert onnx.load(str(source)).graph.node[1].attribute == []  # the files are not changed


def test_the_noise_floor_draws_the_same_noise_too(tmp_path):
    source, target = _noisy(tmp_path, chain=False)
    record = json.loads(
        CliRunner().invoke(main, ["compare", str(source), str(target), "--noise-floor", "--json"]).stdout
    )
    assert record["noise_floor"]["outputs"]["y"]["cosine"] > 0.99999


def test_a_deterministic_model_is_compared_as_it_was(tmp_path):
    from tests.helpers import softmax_model

    source, target = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(softmax_model(["n", 8], -1), str(source))
    assert CliRunner().invoke(main, ["rewrite", str(source), "-o", str(target)]).exit_code == 0
    result = CliRunner().invoke(main, ["compare", str(source), str(target)])
    assert result.exit_code == 0 and "random ops" not in result.output
    assert (
        json.loads(CliRunner().invoke(main, ["compare", str(source), str(target), "--json"]).stdout)[
            "seeded_random_ops"
        ]
        == 0
    )


def test_seeds_come_from_output_names_and_a_given_seed_is_kept():
    branch = helper.make_graph(
        [helper.make_node("RandomUniform", [], ["u"], shape=[2])],
        "then",
        [],
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("RandomNormal", [], ["a"], shape=[2], seed=7.0),
            helper.make_node("Bernoulli", ["a"], ["b"]),
            helper.make_node("If", ["c"], ["v"], then_branch=branch, else_branch=branch),
            helper.make_node("Multinomial", ["a2"], ["m"], domain="com.vendor"),  # not a standard op: left alone
        ],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("a2",)]
        + [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("b", "v", "m")],
    )
    model = helper.make_model(graph)
    assert [n.op_type for n in unseeded_random_ops(model)] == ["Bernoulli", "RandomUniform", "RandomUniform"]
    assert describe_random_ops(unseeded_random_ops(model)) == "1 Bernoulli, 2 RandomUniform"
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    twin.graph.node.insert(0, helper.make_node("Identity", ["a2"], ["extra"]))  # other nodes: the same seeds
    seed_random_ops(model)
    seed_random_ops(twin)
    seeds = [a.f for n in model.graph.node for a in n.attribute if a.name == "seed"]
    assert (
        seeds[0] == 7.0
        and len(seeds) == 2
        and seeds == [a.f for n in twin.graph.node for a in n.attribute if a.name == "seed"]
    )
    inner = model.graph.node[2].attribute[0].g.node[0]
    assert [a.name for a in inner.attribute if a.name == "seed"] == ["seed"]
    assert unseeded_random_ops(model) == [] and all(0 <= s < 2**24 for s in seeds)


@pytest.mark.parametrize("command", ["eval", "layers"])
def test_eval_and_layers_draw_the_same_noise_in_both_models(tmp_path, command):
    """Unseeded, the chain form's conversion drew other noise: eval read agreement 12.5%, cosine 0.07."""
    source, _ = _noisy(tmp_path, chain=True)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).normal(0, 2, (64, 16)).astype(np.float32))
    result = CliRunner().invoke(main, [command, str(source), "--data", str(data), "--chain", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    rows = record["outputs"] if command == "eval" else record["rows"][1:]
    assert all(row["cosine"] > 0.9999 for row in rows), rows


def test_ops_of_the_spelled_out_default_domain_and_distinct_names_get_distinct_seeds():
    graph = helper.make_graph(
        [
            helper.make_node("RandomNormal", [], ["first"], shape=[2], domain="ai.onnx", name="n1"),
            helper.make_node("RandomNormal", [], ["second"], shape=[2], name="n2"),
        ],
        "g",
        [],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("first", "second")],
    )
    model = helper.make_model(graph)
    assert len(unseeded_random_ops(model)) == 2
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    for index, found in enumerate(renamed.graph.node):
        found.name = f"other{index}"  # a rewrite may rename nodes; outputs keep their names
    seed_random_ops(model)
    seed_random_ops(renamed)
    seeds = [n.attribute[-1].f for n in model.graph.node]
    assert seeds == [n.attribute[-1].f for n in renamed.graph.node]
    assert seeds[0] != seeds[1] and all(s == int(s) and 24 < s < 2**24 for s in seeds)


def test_a_seeded_model_onnxruntime_refuses_is_named_by_its_path(tmp_path):
    source, target = _noisy(tmp_path, chain=False)
    broken = onnx.load(str(target))
    broken.graph.node.append(helper.make_node("Foo", ["y"], ["z"], domain="com.vendor"))
    broken.opset_import.append(helper.make_opsetid("com.vendor", 1))
    onnx.save(broken, str(target))
    result = CliRunner().invoke(main, ["compare", str(source), str(target)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {target}: onnxruntime cannot load the model: ")


@pytest.mark.parametrize("through_a_folder", [False, True])
def test_an_in_memory_session_is_named_by_its_label(monkeypatch, through_a_folder):
    import sit_onnx.evaluate.seeding as seeding
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.evaluate.seeding import proto_session
    from sit_onnx.runtime import SessionSpec

    monkeypatch.setattr(seeding, "needs_external_data", lambda model: through_a_folder)
    graph = helper.make_graph(
        [helper.make_node("Foo", ["x"], ["y"], domain="com.vendor")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.vendor", 1)])
    with pytest.raises(SitOnnxError, match=r"^floor of m\.onnx: onnxruntime cannot load the model"):
        proto_session(model, SessionSpec(provider="cpu", use_library=False), "floor of m.onnx")
