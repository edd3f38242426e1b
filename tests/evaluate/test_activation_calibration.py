"""Activation calibration: inputs pooled per function from the original model, the shipped set
polished on half of them, the better set on the other half chosen and reported."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.activation_params import choose_activation_params, held_out_error
from sit_onnx.evaluate.capture import capture
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons.activation import (
    SAMPLE_WEIGHT_FLOOR,
    fit_activation,
    sample_weights,
    shipped_activation,
    spiking_activation,
)
from tests.cli.test_rewrite_cli import invoke
from tests.helpers import run


def _two_layer_gelu(path=None):
    """x @ w1 -> GELU (ONNX Gelu) -> @ w2 -> Tanh: two activation functions, inputs mostly in [-2, 2]."""
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), n) for n in ("w1", "w2"))
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
            helper.make_node("Gelu", ["h"], ["g"], name="gelu"),
            helper.make_node("MatMul", ["g", "w2"], ["t"], name="fc2"),
            helper.make_node("Tanh", ["t"], ["y"], name="tanh"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    if path:
        onnx.save(model, str(path))
    return model


def _feeds(rows=64):
    return {"x": np.random.default_rng(1).normal(0, 1, (rows, 16)).astype(np.float32)}


def test_each_function_gets_its_inputs_figures_and_the_better_set_on_held_out_inputs():
    model, feeds = _two_layer_gelu(), _feeds()
    choices = choose_activation_params(model, feeds, ("gelu", "tanh", "silu"), 8)
    assert [c.function for c in choices] == ["gelu", "tanh"]  # no SiLU in the model: nothing to calibrate
    gelu = choices[0]
    h = capture(model, ["h"], feeds)["h"].astype(np.float64).reshape(-1)  # what GELU is fed
    assert gelu.sites == 1 and gelu.samples == h.size
    assert (gelu.p01, gelu.p50, gelu.p99) == pytest.approx(tuple(np.percentile(h, [1, 50, 99])))
    assert gelu.inside_range == pytest.approx(np.mean(np.abs(h) <= 4))
    assert set(gelu.candidates) == {"shipped", "polished on the data"}
    assert gelu.chosen == min(gelu.candidates, key=lambda k: gelu.candidates[k]["rmse"])
    held = np.random.default_rng(0).permutation(h)[1::2]
    assert gelu.candidates["shipped"] == held_out_error(shipped_activation("gelu", 8), held)
    assert gelu.candidates[gelu.chosen] == held_out_error(gelu.params, held)
    assert gelu.candidates["polished on the data"]["rmse"] < gelu.candidates["shipped"]["rmse"]
    assert gelu.params.steps == 8 and gelu.params.function == "gelu" and "params" not in gelu.to_dict()


def test_without_polish_the_shipped_set_is_all_there_is():
    (choice,) = choose_activation_params(_two_layer_gelu(), _feeds(), ("tanh",), 12, polish=False)
    assert list(choice.candidates) == ["shipped"] and choice.chosen == "shipped"
    assert choice.params == shipped_activation("tanh", 12)


def test_calibrated_sets_are_what_the_rewrite_writes():
    model = _two_layer_gelu()
    own = fit_activation("gelu", 8, (-3, 3), restarts=1, iterations=20, polish_rounds=1)
    new, report = rewrite_model(
        model, RewriteOptions(steps=8, activations=("gelu", "tanh")), activation_sets={"gelu": own}
    )
    assert [a["range"] for a in report.activations] == [[-3.0, 3.0], [-4.0, 4.0]]
    x = _feeds(4)["x"]
    h = x @ numpy_helper.to_array(model.graph.initializer[0])
    g = spiking_activation(h, own) @ numpy_helper.to_array(model.graph.initializer[1])
    np.testing.assert_allclose(run(new, {"x": x})[0], spiking_activation(g, shipped_activation("tanh", 8)), atol=1e-6)
    with pytest.raises(
        SitOnnxError, match="calibrated activation sets for \\['gelu', 'tanh'\\]; asked for \\['tanh'\\]"
    ):
        rewrite_model(model, RewriteOptions(steps=8, activations=("tanh",)), activation_sets={"gelu": own})


def test_rewrite_calibrate_with_activations_end_to_end(tmp_path):
    path = tmp_path / "m.onnx"
    _two_layer_gelu(path)
    data = tmp_path / "d.npz"
    np.savez(data, **_feeds())
    out = tmp_path / "o.onnx"
    args = ["rewrite", path, "-o", out, "-k", "8", "--activations", "gelu,tanh", "--calibrate", data]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert [c["function"] for c in record["activation_calibration"]] == ["gelu", "tanh"]
    assert all(c["chosen"] in c["candidates"] for c in record["activation_calibration"])
    assert {c["chosen"] for c in record["activation_calibration"]} == {"polished on the data"}
    default = tmp_path / "default.onnx"
    assert invoke("rewrite", path, "-o", default, "-k", "8", "--activations", "gelu,tanh").exit_code == 0
    written = [_thresholds(out), _thresholds(default)]
    assert len(written[0]) == len(written[1]) == 2  # gelu's node and tanh's, each with its polished set
    assert all(not np.allclose(own, shipped) for own, shipped in zip(*written))
    text = invoke(*args, "--force")
    assert "activation  sites  inputs" in text.output and "RMSE shipped  RMSE chosen" in text.output
    shipped_only = invoke(*args, "--force", "--calibrate-rounds", "0", "--json")
    assert {c["chosen"] for c in json.loads(shipped_only.output)["activation_calibration"]} == {"shipped"}


def _thresholds(path) -> list[np.ndarray]:
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type == "SpikingActivation"]
    return [np.array(next(a.floats for a in n.attribute if a.name == "thresholds")) for n in nodes]


def test_sample_weights_follow_the_density_with_a_floor():
    grid = np.linspace(-4, 4, 801)
    samples = np.random.default_rng(0).normal(-1, 0.5, 100_000)
    w = sample_weights(grid, np.concatenate([samples, [np.nan, np.inf]]))
    assert w.mean() == pytest.approx(1.0)
    assert abs(grid[np.argmax(w)] + 1) < 0.1  # densest at the samples' mean
    assert w[0] == w[-1] == w.min() > 0  # the floor keeps the empty ends in the fit
    # all samples in one bin: smoothed over 801 // 100 = 8 bins, density 801/8 there (mean 1), the floor elsewhere
    point = sample_weights(grid, np.full(1000, 0.5))
    assert (point.max() / point.min()) ** 2 == pytest.approx((801 / 8) / SAMPLE_WEIGHT_FLOOR)
    assert np.count_nonzero(point > point.min()) == 8
    np.testing.assert_allclose(sample_weights(grid, np.zeros(0)), 1.0)


def test_a_fit_on_samples_does_better_where_the_samples_are():
    samples = np.random.default_rng(0).normal(-1, 0.4, 50_000)
    start = shipped_activation("gelu", 8)
    polished = fit_activation("gelu", 8, (-4, 4), samples=samples, warm_start=start, polish_rounds=4)
    assert polished.neuron.meta["weighted_by_samples"] == 50_000 and "warm_start" in polished.neuron.meta
    assert polished.neuron.method == "warm start + coordinate polish"  # no exploration ran
    held = np.random.default_rng(1).normal(-1, 0.4, 50_000)
    assert held_out_error(polished, held)["rmse"] < held_out_error(start, held)["rmse"]


def test_warm_start_must_match_function_and_steps():
    with pytest.raises(SitOnnxError, match="warm start: a gelu set of K=8; need tanh, K=8"):
        fit_activation("tanh", 8, warm_start=shipped_activation("gelu", 8))
    with pytest.raises(SitOnnxError, match="need gelu, K=12"):
        fit_activation("gelu", 12, warm_start=shipped_activation("gelu", 8))


def test_calibrate_reports_each_asked_activations_inputs(tmp_path):
    path = tmp_path / "m.onnx"
    model = _two_layer_gelu(path)
    data = tmp_path / "d.npz"
    np.savez(data, **_feeds())
    result = invoke("calibrate", path, "--data", data, "--activations", "gelu,tanh", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["sites"] == [] and [a["function"] for a in record["activations"]] == ["gelu", "tanh"]
    h = capture(model, ["h"], _feeds())["h"].astype(np.float64).reshape(-1)
    assert record["activations"][0]["p99"] == pytest.approx(np.percentile(h, 99))
    assert "chosen" not in record["activations"][0]
    text = invoke("calibrate", path, "--data", data, "--activations", "tanh")
    assert text.exit_code == 0 and "tanh      1" in text.output and "[-4.0, 4.0]" in text.output
    nothing = invoke("calibrate", path, "--data", data)
    assert nothing.exit_code == 1 and "no Softmax node to calibrate" in nothing.output
    silu = invoke("calibrate", path, "--data", data, "--activations", "silu")
    assert "no Softmax node nor asked-for activation to calibrate" in silu.output


def test_choice_ticks_once_per_function_and_keeps_the_shipped_set_when_polish_does_worse(monkeypatch):
    from dataclasses import replace

    from sit_onnx.evaluate import activation_params

    worse = lambda function, steps, *args, **kwargs: replace(shipped_activation(function, steps), bias=1.0)  # noqa: E731
    monkeypatch.setattr(activation_params, "fit_activation", worse)
    ticks = []
    choices = choose_activation_params(_two_layer_gelu(), _feeds(), ("gelu", "silu", "tanh"), 8, progress=ticks.append)
    assert ticks == [1, 1, 1]  # one per asked-for function, also the one the model lacks
    assert [c.chosen for c in choices] == ["shipped", "shipped"]
    assert all(c.candidates["polished on the data"]["rmse"] > c.candidates["shipped"]["rmse"] for c in choices)


def test_inputs_are_drawn_down_to_two_halves(monkeypatch):
    from sit_onnx.evaluate import activation_params

    monkeypatch.setattr(activation_params, "SAMPLES_PER_HALF", 100)
    (choice,) = choose_activation_params(_two_layer_gelu(), _feeds(), ("gelu",), 8, polish=False)
    assert choice.samples == 200
    (described,) = activation_params.activation_inputs(_two_layer_gelu(), _feeds(), ("gelu",))  # what calibrate shows
    assert described.samples == 200 and described.p99 == choice.p99


def test_one_input_is_both_halves_and_the_range_ends_count_as_inside():
    from sit_onnx.evaluate.activation_params import _choose

    one = _choose("tanh", "tanh", 1, np.array([0.5]), 8, polish=False)
    assert one.samples == 1 and one.candidates["shipped"] == held_out_error(
        shipped_activation("tanh", 8), np.array([0.5])
    )
    ends = _choose("tanh", "tanh", 2, np.array([-4.0, 4.0, 4.5, -9.0]), 8, polish=False)
    assert ends.inside_range == 0.5 and ends.sites == 2
    # two inputs are two halves: the held-out one is the second in calibration's seeded order
    two = np.array([0.25, -3.0])
    held = np.random.default_rng(0).permutation(two)[1:]
    pair = _choose("tanh", "tanh", 1, two, 8, polish=False)
    assert pair.candidates["shipped"] == held_out_error(shipped_activation("tanh", 8), held)
    assert pair.candidates["shipped"] != held_out_error(shipped_activation("tanh", 8), two)


def test_gated_calibration_keeps_functions_without_a_gate_direct():
    choices = choose_activation_params(_two_layer_gelu(), _feeds(), ("gelu", "tanh"), 8, polish=False, gated=True)
    assert [(c.function, c.params.function) for c in choices] == [("gelu", "gelu_gate"), ("tanh", "tanh")]


def test_the_polish_sees_one_half_and_the_choice_is_scored_on_the_other(monkeypatch):
    """No leak: the samples the set is polished on and the held-out ones are disjoint halves."""
    from sit_onnx.evaluate import activation_params

    seen = {}

    def record(function, steps, input_range, samples, **kwargs):
        seen["fit"] = np.array(samples)
        return shipped_activation(function, steps)

    monkeypatch.setattr(activation_params, "fit_activation", record)
    x = np.random.default_rng(3).normal(size=1001)
    choice = activation_params._choose("tanh", "tanh", 1, x, 8, polish=True)
    drawn = np.random.default_rng(0).permutation(x)
    np.testing.assert_array_equal(seen["fit"], drawn[0::2])
    assert choice.candidates["shipped"] == held_out_error(shipped_activation("tanh", 8), drawn[1::2])
    assert set(choice.candidates["shipped"]) == {"rmse", "max_error"}


def test_calibrate_text_table_is_the_json_figures(tmp_path):
    from tests.helpers import parse_table

    path = tmp_path / "m.onnx"
    _two_layer_gelu(path)
    data = tmp_path / "d.npz"
    np.savez(data, x=3 * _feeds()["x"])  # wide inputs: some fall outside the shipped ranges
    args = ["calibrate", path, "--data", data, "--activations", "gelu,tanh"]
    record = json.loads(invoke(*args, "--json").output)["activations"]
    assert 0.3 < record[0]["inside_range"] < 0.99
    header, rows = parse_table(invoke(*args).output)
    assert header == ["activation", "sites", "inputs", "p1", "median", "p99", "shipped range", "in range"]
    for row, figures in zip(rows, record, strict=True):
        assert row[:3] == [figures["function"], str(figures["sites"]), str(figures["samples"])]
        expected = [figures["p01"], figures["p50"], figures["p99"]]
        assert [float(v) for v in row[3:6]] == pytest.approx(expected, rel=1e-3, abs=1e-3)  # 4 digits shown
        assert row[6] == "[-4.0, 4.0]" and row[7] == f"{100 * figures['inside_range']:.1f}%"


def test_calibration_leaves_the_model_as_it_was_and_reads_the_main_graph_only():
    model = _two_layer_gelu()
    branch = helper.make_graph(
        [helper.make_node("Sigmoid", ["y"], ["b"], name="inner")], "branch", [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    )  # fmt: skip
    model.graph.node.append(helper.make_node("If", ["flag"], ["z"], name="if", then_branch=branch, else_branch=branch))
    model.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    before = model.SerializeToString()
    feeds = {**_feeds(), "flag": np.array(True)}
    (choice,) = choose_activation_params(model, feeds, ("sigmoid",), 8, polish=False) or [None]
    assert model.SerializeToString() == before
    assert choice is None  # the only Sigmoid sits inside the If: nothing to read on the main graph


def test_a_quick_gelus_inputs_are_pooled_as_its_silu_set_reads_them():
    """x * Sigmoid(1.702 x) calibrates SiLU's set on 1.702 x, pooled with a plain SiLU's x; the
    rewrite then writes the chosen set rescaled for the QuickGELU, as is for the SiLU."""
    nodes = [
        helper.make_node("Mul", ["x", "beta"], ["bx"], name="scale"),
        helper.make_node("Sigmoid", ["bx"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["q"], name="quick"),
        helper.make_node("Sigmoid", ["q"], ["t"], name="sig2"),
        helper.make_node("Mul", ["t", "q"], ["y"], name="silu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])],
        [numpy_helper.from_array(np.array(1.702, np.float32), "beta")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = _feeds()
    q = capture(model, ["q"], feeds)["q"]
    pooled = np.concatenate([1.702 * feeds["x"].astype(np.float64).reshape(-1), q.astype(np.float64).reshape(-1)])
    (choice,) = choose_activation_params(model, feeds, ("silu",), 8)
    assert choice.sites == 2 and choice.samples == pooled.size
    assert (choice.p01, choice.p99) == pytest.approx(tuple(np.percentile(pooled, [1, 99])), rel=1e-6)
    new, report = rewrite_model(
        model, RewriteOptions(steps=8, activations=("silu",)), activation_sets={"silu": choice.params}
    )
    assert [a["input_scale"] for a in report.activations] == [pytest.approx(1.702), 1.0]
    x = _feeds(4)["x"]
    beta = float(np.float32(1.702))
    first = spiking_activation(x, choice.params.rescaled(beta))
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(first, choice.params))


def test_rewrite_calibrate_activation_table_and_one_polish_round(tmp_path):
    """The text table's columns are the JSON's figures; one --calibrate-rounds is enough to polish."""
    from tests.helpers import parse_table

    path, data, out = tmp_path / "m.onnx", tmp_path / "d.npz", tmp_path / "o.onnx"
    _two_layer_gelu(path)
    np.savez(data, **_feeds())
    args = ["rewrite", path, "-o", out, "-k", "8", "--activations", "gelu", "--calibrate", data]
    record = json.loads(invoke(*args, "--calibrate-rounds", "1", "--json").output)
    (gelu,) = record["activation_calibration"]
    assert set(gelu["candidates"]) == {"shipped", "polished on the data"}
    text = invoke(*args, "--calibrate-rounds", "1", "--force").output
    table = text[text.index("activation  sites") :]
    header, rows = parse_table(table)
    assert header == ["activation", "sites", "inputs", "p1", "p99", "in range", "set", "RMSE shipped", "RMSE chosen"]
    assert rows[0][:3] == ["gelu", "1", str(gelu["samples"])] and rows[0][6] == gelu["chosen"]


def test_rewrite_calibrate_polishes_the_set_of_the_activations_own_steps(tmp_path):
    """With --activation-steps 16 beside -k 8, calibration starts from the K=16 shipped set and the
    converted file's activations carry 16 steps, the softmax sets 8."""
    import onnx

    path, data, out = tmp_path / "m.onnx", tmp_path / "d.npz", tmp_path / "o.onnx"
    _two_layer_gelu(path)
    np.savez(data, **_feeds())
    args = ["rewrite", path, "-o", out, "-k", "8", "--activations", "gelu", "--calibrate", data, "--json"]
    record = json.loads(invoke(*args, "--activation-steps", "16", "--calibrate-rounds", "0").output)
    (gelu,) = record["activation_calibration"]
    assert gelu["chosen"] == "shipped"
    converted = onnx.load(str(out))
    (node,) = [n for n in converted.graph.node if n.op_type == "SpikingActivation"]
    thresholds = next(a.floats for a in node.attribute if a.name == "thresholds")
    np.testing.assert_array_equal(thresholds, np.float32(shipped_activation("gelu", 16).neuron.thresholds))
    assert [a["steps"] for a in record["activations"]] == [16] and record["steps"] == 8


def test_rewrite_calibrate_of_the_gated_form_chooses_among_gate_sets(tmp_path):
    """--activation-form gated with --calibrate: the set calibrated and written is GELU's gate set."""
    import onnx

    path, data, out = tmp_path / "m.onnx", tmp_path / "d.npz", tmp_path / "o.onnx"
    _two_layer_gelu(path)
    np.savez(data, **_feeds())
    args = ["rewrite", path, "-o", out, "-k", "8", "--activations", "gelu", "--calibrate", data, "--json"]
    result = invoke(*args, "--activation-form", "gated", "--calibrate-rounds", "0")
    assert result.exit_code == 0, result.output
    (gelu,) = json.loads(result.output)["activation_calibration"]
    assert gelu["chosen"] == "shipped"
    (node,) = [n for n in onnx.load(str(out)).graph.node if n.op_type == "SpikingActivation"]
    attributes = {a.name: a for a in node.attribute}
    assert attributes["gate"].i == 1
    gate_set = shipped_activation("gelu_gate", 8).neuron.thresholds
    np.testing.assert_array_equal(attributes["thresholds"].floats, np.float32(gate_set))
