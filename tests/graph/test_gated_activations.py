"""`--activation-form gated`: GELU, SiLU and HardSwish as x * gate(x), one SpikingActivation whose
neuron computes the gate and which multiplies it by x (attribute gate=1); the shipped gate sets,
their fit weighting, calibration and energy."""

import json
import math
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.activation_params import choose_activation_params
from sit_onnx.evaluate.capture import capture
from sit_onnx.evaluate.energy import estimate_energy
from sit_onnx.graph.activations import parse_activations
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons.activation import (
    GATE_FUNCTIONS,
    SHIPPED_STEPS,
    activation_function,
    activation_quality,
    fit_activation,
    gate_weights,
    shipped_activation,
    site_exact,
    spiking_activation,
)
from tests.cli.test_rewrite_cli import assert_one_line_error, invoke
from tests.graph.test_activation_rewrite import FORMS, _const, _model, _swish, _x
from tests.helpers import parse_table, run

ALL = ("gelu", "silu", "sigmoid", "tanh", "hardsigmoid", "hardswish")
GATED = {"gelu": "gelu_gate", "silu": "silu_gate", "hardswish": "hardswish_gate"}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_gated_is_the_gate_times_x_and_the_rest_stay_direct(form):
    build, function, _ = FORMS[form]
    nodes, consts = build()
    model = _model(nodes, consts, opset=20 if form == "Gelu op" else 17)
    new, report = rewrite_model(model, RewriteOptions(activations=ALL, activation_form="gated"))
    (site,) = report.activations
    x = _x()
    got = run(new, {"x": x})[0]
    (node,) = new.graph.node
    assert node.op_type == "SpikingActivation" and site["replaced_with"] == ["SpikingActivation"]
    gate_attr = [a.i for a in node.attribute if a.name == "gate"]
    if function in GATED:
        gate = shipped_activation(GATED[function], 12)
        assert site["set"] == GATED[function] and gate_attr == [1]
        np.testing.assert_array_equal(got, spiking_activation(x, gate))
        lo, hi = gate.input_range
        inside = (x >= lo) & (x <= hi)
        neuron = spiking_activation(x, replace(gate, function="sigmoid"))  # the same neuron, no gate
        np.testing.assert_array_equal(got[inside], x[inside] * neuron[inside])
    else:  # Sigmoid, Tanh, HardSigmoid have no gate: the same node as direct
        assert site["set"] == function and gate_attr == [0]  # spelled out: tools without defaults read it
        np.testing.assert_array_equal(got, spiking_activation(x, shipped_activation(function, 12)))


@pytest.mark.parametrize("function", sorted(GATED))
@pytest.mark.parametrize("steps", [8, 12])
def test_a_gate_is_closer_to_its_function_than_the_direct_neuron(function, steps):
    """On FFN-like inputs (and GELU's prior) the gated site's error is at least 2x lower (RMSE and max)."""
    x = np.random.default_rng(3).normal(-1.2, 1.25, 100_000).astype(np.float32)
    exact = activation_function(function).exact(x.astype(np.float64))
    gated = spiking_activation(x, shipped_activation(GATED[function], steps)) - exact
    direct = spiking_activation(x, shipped_activation(function, steps)) - exact
    assert np.sqrt(np.mean(gated**2)) * 2 < np.sqrt(np.mean(direct**2))
    assert np.abs(gated).max() * 2 < np.abs(direct).max()


def test_bias_gelu_gated_multiplies_the_biased_input():
    model = _model(
        [helper.make_node("BiasGelu", ["x", "b"], ["y"], name="g", domain="com.microsoft")],
        [_const("b", np.linspace(-1, 1, 50))],
        domains=["com.microsoft"],
    )
    new, _ = rewrite_model(model, RewriteOptions(activations=("gelu",), activation_form="gated", steps=8))
    assert [n.op_type for n in new.graph.node] == ["Add", "SpikingActivation"]
    x = _x()
    fed = x + np.linspace(-1, 1, 50).astype(np.float32)
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(fed, shipped_activation("gelu_gate", 8)))


@pytest.mark.parametrize("opset", [13, 17])
def test_float16_gated_sites_at_every_opset(opset):
    nodes, consts = FORMS["SiLU"][0]()
    model = _model(nodes, consts, opset=opset, dtype=TensorProto.FLOAT16)
    new, _ = rewrite_model(model, RewriteOptions(activations=("silu",), activation_form="gated"))
    ops = [n.op_type for n in new.graph.node]
    assert ops == (["Cast", "SpikingActivation", "Cast"] if opset < 15 else ["SpikingActivation"])
    x = _x().astype(np.float16)
    got = run(new, {"x": x})[0]
    assert got.dtype == np.float16
    # x * gate in float32, rounded to float16 once (not the gate first, then the product)
    gate = shipped_activation("silu_gate", 12)
    np.testing.assert_array_equal(got, spiking_activation(x, gate))
    wide = x.astype(np.float32)
    np.testing.assert_array_equal(got, spiking_activation(wide, gate).astype(np.float16))
    neuron = spiking_activation(x, replace(gate, function="sigmoid"))  # the gate rounded to float16 first
    assert np.any(got != x * neuron)


def test_quick_gelu_gated_is_the_gate_on_beta_x_times_x():
    new, report = rewrite_model(_swish(), RewriteOptions(activations=("silu",), activation_form="gated"))
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation"]
    assert report.activations[0]["range"] == pytest.approx([-8 / 1.702, 8 / 1.702])
    x = _x()
    y = run(new, {"x": x})[0]
    gate = shipped_activation("silu_gate", 12)
    beta = np.float32(1.702)
    np.testing.assert_array_equal(y, spiking_activation(x, gate.rescaled(float(beta))))
    np.testing.assert_allclose(y, spiking_activation(beta * x, gate) / beta, atol=1e-5)
    assert np.abs(y - x / (1 + np.exp(-1.702 * x))).max() < 0.06  # the direct SiLU set's: 0.12


def test_a_rescaled_gate_keeps_its_weights_and_bias():
    """x * g(2x) = (2x * g(2x)) / 2: the neuron on 2x (thresholds, resets, range halved), its weights
    and bias unchanged (the gate's level), the tails' intercepts halved (they are the site's)."""
    gate = replace(shipped_activation("silu_gate", 12), tails=(0.5, 0.25, 1.0, -0.5))
    scaled = gate.rescaled(2.0)
    assert scaled.neuron.weights == gate.neuron.weights and scaled.bias == gate.bias
    assert scaled.tails == (0.5, 0.125, 1.0, -0.25)
    assert scaled.neuron.thresholds == tuple(v / 2 for v in gate.neuron.thresholds)
    assert scaled.neuron.resets == tuple(v / 2 for v in gate.neuron.resets)
    assert scaled.input_range == (-4.0, 4.0)
    x = np.linspace(-6, 6, 1001)
    np.testing.assert_allclose(spiking_activation(x, scaled), spiking_activation(2 * x, gate) / 2, atol=1e-6)


def test_gate_files_serve_their_function_and_are_checked(tmp_path):
    path = tmp_path / "gate.json"
    fitted = fit_activation("gelu_gate", 8, restarts=1, iterations=30, polish_rounds=1)
    fitted.save(path)
    nodes, consts = FORMS["Gelu op"][0]()
    model = _model(nodes, consts, opset=20)
    # a gate file is taken for its function in either form: the file says what the neuron computes
    new, report = rewrite_model(model, RewriteOptions(steps=8, activations=("gelu",), activation_params=(str(path),)))
    assert report.activations[0]["set"] == "gelu_gate"
    x = _x()
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, fitted))
    with pytest.raises(SitOnnxError, match="holds a gelu_gate set, but --activations does not name gelu"):
        rewrite_model(model, RewriteOptions(steps=8, activations=("tanh",), activation_params=(str(path),)))
    direct = tmp_path / "direct.json"
    shipped_activation("gelu", 8).save(direct)
    with pytest.raises(SitOnnxError, match="two files for gelu"):
        rewrite_model(model, RewriteOptions(steps=8, activations=("gelu",), activation_params=(str(path), str(direct))))
    with pytest.raises(SitOnnxError, match="--activation-form 'both'; known: direct, gated"):
        rewrite_model(model, RewriteOptions(activations=("gelu",), activation_form="both"))


def test_a_gate_is_no_activation_name():
    with pytest.raises(SitOnnxError, match=r"unknown activation 'gelu_gate' \(a gate's set is chosen by --activation"):
        parse_activations("gelu,gelu_gate")
    with pytest.raises(SitOnnxError, match=r"unknown activation 'relu'; known: gelu, silu, sigmoid, tanh"):
        parse_activations("relu")


@pytest.mark.parametrize("gate", sorted(GATE_FUNCTIONS))
def test_a_gate_sets_quality_is_its_sites_error(gate):
    params = shipped_activation(gate, 12)
    quality = activation_quality(params)
    lo, hi = params.input_range
    x = np.random.default_rng(12345).uniform(lo, hi, 100_000)
    err = spiking_activation(x, params) - site_exact(gate, x)
    assert quality.rmse == pytest.approx(float(np.sqrt(np.mean(err**2))))
    assert quality.max_error == pytest.approx(float(np.abs(err).max()))
    # the tails: 0 below, x above (the gated function's own); they meet it where the range ends
    assert params.tails == (0.0, 0.0, 1.0, 0.0)
    assert spiking_activation(np.array([-np.inf, lo - 50.0, hi + 50.0]), params).tolist() == [0.0, 0.0, hi + 50.0]
    assert quality.tail_max_error < 3e-3
    assert params.neuron.rmse == pytest.approx(quality.rmse)


def test_gate_weights_are_abs_x_floored():
    grid = np.array([-4.0, -1.0, 0.0, 0.001, 2.0])
    np.testing.assert_array_equal(gate_weights(grid), [4.0, 1.0, 0.004, 0.004, 2.0])


def _phi_solve(params, weight=None):
    """d and bias of `params`' neuron fitted to Phi on the fit grid by least squares, the error
    weighted by `weight(x)` (computed here, apart from the fitter)."""
    from sit_onnx.neurons.fit import GRID_POINTS, spike_matrix

    x = np.linspace(-4.0, 4.0, GRID_POINTS)
    spikes = spike_matrix(x, np.array(params.neuron.thresholds), np.array(params.neuron.resets))
    design = np.column_stack([spikes, np.ones_like(x)])
    target = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))  # Phi, the gate
    w = np.ones_like(x) if weight is None else weight(x)
    return np.linalg.lstsq(design * w[:, None], target * w, rcond=None)[0]


def test_a_gate_fit_weighs_its_error_by_x():
    """A gate's d and bias solve least squares with the error weighted by |x| (the site's error is
    x times the gate's): a warm start without polish is exactly that solve on the fit grid."""
    shipped = shipped_activation("gelu_gate", 8)
    refit = fit_activation("gelu_gate", 8, warm_start=shipped, polish_rounds=0)
    assert refit.neuron.thresholds == shipped.neuron.thresholds
    weighted, plain = _phi_solve(shipped, gate_weights), _phi_solve(shipped)
    np.testing.assert_allclose([*refit.neuron.weights, refit.bias], weighted, atol=1e-6)
    assert np.abs(weighted - plain).max() > 1e-3  # the weighting changes the answer


def test_shipped_gate_sets_improve_with_steps_and_record_their_weighting():
    figures = [activation_quality(shipped_activation("gelu_gate", k)).rmse for k in SHIPPED_STEPS]
    assert figures == sorted(figures, reverse=True)
    assert shipped_activation("gelu_gate", 12).neuron.meta["inputs"] == "normal:-1.2,1.25"


def _gelu_then_matmul():
    nodes, consts = FORMS["Erf form (torch)"][0]()
    nodes = nodes + [helper.make_node("MatMul", ["y", "w"], ["z"], name="fc")]
    model = _model(nodes, consts + [numpy_helper.from_array(np.ones((50, 3), np.float32), "w")])
    model.graph.output[0].name = "z"
    return model


def test_energy_a_gated_layer_is_not_fed_by_spikes_but_its_neurons_count():
    model, x = _gelu_then_matmul(), {"x": _x()}
    direct, _ = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    gated, _ = rewrite_model(model, RewriteOptions(activations=("gelu",), activation_form="gated"))
    by_spikes = estimate_energy(model, direct, x)
    by_products = estimate_energy(model, gated, x)
    assert by_spikes.layers[0].spike_rate is not None
    assert by_products.layers[0].spike_rate is None  # x * gate is analog: the MatMul stays MACs
    assert by_products.layers[0].analog_share == 0.0
    assert by_products.layers[0].converted_pj == by_products.layers[0].ann_pj
    assert by_products.neuron_ops > 0


def test_energy_adds_up_the_neurons_of_every_activation():
    """Two activations (GELU then Tanh): the neurons' accumulates are the sum of both nodes'."""
    from sit_onnx.evaluate.energy import _activation_activity

    nodes, consts = FORMS["Erf form (torch)"][0]()
    nodes = nodes + [helper.make_node("Tanh", ["y"], ["t"], name="tanh")]
    nodes += [helper.make_node("MatMul", ["t", "w"], ["z"], name="fc")]
    model = _model(nodes, consts + [numpy_helper.from_array(np.ones((50, 3), np.float32), "w")])
    model.graph.output[0].name = "z"
    x = _x()
    for form in ("direct", "gated"):
        converted, _ = rewrite_model(model, RewriteOptions(activations=("gelu", "tanh"), activation_form=form))
        first, second = converted.graph.node[:2]
        gelu_out = capture(converted, [first.output[0]], {"x": x})[first.output[0]]
        total = _activation_activity(first, x)[2] + _activation_activity(second, gelu_out)[2]
        assert estimate_energy(model, converted, {"x": x}).neuron_ops == pytest.approx(total / 2)


def test_calibration_gated_polishes_the_gate_and_judges_the_product():
    model = _gelu_then_matmul()
    feeds = {"x": np.random.default_rng(0).normal(-1, 1.2, (2, 50)).astype(np.float32)}
    (choice,) = choose_activation_params(model, feeds, ("gelu",), 8, gated=True)
    assert choice.function == "gelu" and choice.params.function == "gelu_gate"
    assert set(choice.candidates) == {"shipped", "polished on the data"}
    # the held-out half: every other input in calibration's seeded order; judged as x * gate
    held = np.random.default_rng(0).permutation(feeds["x"].reshape(-1).astype(np.float64))[1::2]
    err = spiking_activation(held, shipped_activation("gelu_gate", 8)) - site_exact("gelu_gate", held)
    assert choice.candidates["shipped"]["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert choice.candidates["shipped"]["max_error"] == pytest.approx(np.abs(err).max())
    (direct,) = choose_activation_params(model, feeds, ("gelu",), 8, polish=False)
    assert (
        direct.params.function == "gelu" and direct.candidates["shipped"]["rmse"] > choice.candidates["shipped"]["rmse"]
    )


def test_cli_rewrite_gated_end_to_end(tmp_path):
    path, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(_gelu_then_matmul(), str(path))
    result = invoke("rewrite", path, "-o", out, "--activations", "gelu", "--activation-form", "gated", "-k", "8")
    assert result.exit_code == 0, result.output
    header, rows = parse_table(result.output[result.output.index("activation  ") :])
    assert header == ["activation", "graph", "function", "form", "set", "range", "K"]
    assert rows == [["erf", "main", "gelu", "Erf form", "gelu_gate", "[-4.0, 4.0]", "8"]]
    x = _x()
    expected = spiking_activation(x, shipped_activation("gelu_gate", 8)) @ np.ones((50, 3), np.float32)
    np.testing.assert_allclose(run(onnx.load(str(out)), {"x": x})[0], expected, rtol=1e-5)
    bad = invoke("rewrite", path, "-o", tmp_path / "b.onnx", "--activations", "gelu", "--activation-form", "both")
    assert_one_line_error(bad, "'--activation-form': 'both' is not one of 'direct', 'gated'", code=2)
    assert not (tmp_path / "b.onnx").exists()


def test_gated_sites_inline_to_standard_ops_with_the_same_numbers():
    """--inline: the gate attribute reaches the inlined body (and a direct node's absent one, its default 0)."""
    model, x = _gelu_then_matmul(), {"x": _x()}
    for form in ("gated", "direct"):
        options = RewriteOptions(activations=("gelu",), activation_form=form)
        fused, _ = rewrite_model(model, options)
        inlined, _ = rewrite_model(model, replace(options, inline=True))
        assert not inlined.functions and "SpikingActivation" not in {n.op_type for n in inlined.graph.node}
        np.testing.assert_array_equal(run(inlined, x)[0], run(fused, x)[0])


def test_neuron_show_says_a_gate_is_one_and_what_it_computes():
    text = invoke("neuron", "show", "--function", "gelu_gate", "-k", "8")
    assert text.exit_code == 0, text.output
    assert "a gate (op attribute gate=1): the op computes x * this neuron = gelu; errors are of that" in text.output
    quality = activation_quality(shipped_activation("gelu_gate", 8))
    assert f"RMSE {quality.rmse:.6g}, max error {quality.max_error:.6g}" in text.output
    record = json.loads(invoke("neuron", "show", "--function", "gelu_gate", "-k", "8", "--json").output)
    assert record["gate"] is True and record["tails"] == [0.0, 0.0, 1.0, 0.0]
    direct = invoke("neuron", "show", "--function", "gelu", "-k", "8")
    assert "a gate" not in direct.output
    assert json.loads(invoke("neuron", "show", "--function", "gelu", "-k", "8", "--json").output)["gate"] is False


def test_nodes_that_leave_attributes_to_defaults_still_inline():
    """A model converted by an earlier sit-onnx wrote no `gate` (nor, by hand, `shift`): the
    inliner gets them spelled out from the functions' defaults, with the same numbers."""
    from sit_onnx.graph.inline import inline_spiking_functions

    nodes, consts = FORMS["Erf form (torch)"][0]()
    model = _model(nodes + [helper.make_node("Softmax", ["y"], ["z"], name="sm")], consts)
    model.graph.output[0].name = "z"
    converted, _ = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    for node in converted.graph.node:
        kept = [a for a in node.attribute if a.name not in ("gate", "shift")]
        assert len(kept) < len(node.attribute)  # each spiking node had one spelled out
        del node.attribute[:]
        node.attribute.extend(kept)
    x = {"x": _x()}
    expected = run(converted, x)[0]  # onnxruntime applies the defaults itself
    inlined = inline_spiking_functions(onnx.ModelProto.FromString(converted.SerializeToString()))
    assert not inlined.functions
    np.testing.assert_array_equal(run(inlined, x)[0], expected)


def test_the_exploration_gets_the_fits_weighting_and_a_bias(monkeypatch):
    """What explore_start is handed: no weight for a plain fit, the inputs' weighting for one with
    samples, times |x| for a gate; always a bias column."""
    from sit_onnx.neurons import fit
    from sit_onnx.neurons.activation import sample_weights

    seen = []

    def explore(x, opts, tick, target=None, bias=False, weight=None):
        seen.append((x, bias, weight))
        steps = opts.steps
        return np.linspace(1.0, -1.0, steps), np.full(steps, 0.5)

    monkeypatch.setattr(fit, "explore_start", explore)
    samples = np.random.default_rng(0).normal(-1, 1, 5000)
    fit_activation("gelu", 4, polish_rounds=0)
    fit_activation("gelu", 4, samples=samples, polish_rounds=0)
    fit_activation("gelu_gate", 4, samples=samples, polish_rounds=0)
    (x, bias0, w0), (_, bias1, w1), (_, bias2, w2) = seen
    assert (bias0, bias1, bias2) == (True, True, True)
    assert w0 is None
    np.testing.assert_array_equal(w1, sample_weights(x, samples))
    np.testing.assert_array_equal(w2, sample_weights(x, samples) * gate_weights(x))


def test_a_gate_fit_with_samples_solves_with_both_weights():
    from sit_onnx.neurons.activation import sample_weights

    shipped = shipped_activation("gelu_gate", 8)
    samples = np.random.default_rng(1).normal(-1.2, 1.25, 20_000)
    refit = fit_activation("gelu_gate", 8, warm_start=shipped, polish_rounds=0, samples=samples)
    expected = _phi_solve(shipped, lambda x: sample_weights(x, samples) * gate_weights(x))
    np.testing.assert_allclose([*refit.neuron.weights, refit.bias], expected, atol=1e-6)
    assert refit.neuron.meta["weighted_by_samples"] == 20_000


def test_hops_are_seeded():
    shipped = shipped_activation("gelu_gate", 8)
    first, second = (fit_activation("gelu_gate", 8, warm_start=shipped, polish_rounds=0, hops=2) for _ in range(2))
    assert first == second and first.neuron.meta["hops"] == 2
