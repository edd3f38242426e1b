"""`rewrite --activations`: every form exporters write is found and replaced by one SpikingActivation
whose output is the reference's; what is not an activation is left alone, saying why."""

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx import domain
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.activations import parse_activations
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons.activation import fit_activation, shipped_activation, spiking_activation
from tests.helpers import run, softmax_model

ALL = ("gelu", "silu", "sigmoid", "tanh", "hardsigmoid", "hardswish")


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def _model(nodes, initializers=(), opset=17, dtype=TensorProto.FLOAT, extra_outputs=(), domains=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", dtype, [2, 50])],
        [helper.make_tensor_value_info(name, dtype, None) for name in ("y", *extra_outputs)],
        initializer=list(initializers),
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def _erf_torch():  # torch.nn.GELU at opset < 20: ((x * (1 + erf(x / sqrt2))) * 0.5)
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add"),
        helper.make_node("Mul", ["x", "a"], ["m"], name="mul"),
        helper.make_node("Mul", ["m", "half"], ["y"], name="mul_half"),
    ]
    return nodes, [_const("sqrt2", math.sqrt(2)), _const("one", 1.0), _const("half", 0.5)]


def _erf_hf():  # BERT's gelu: (x * 0.5) * (1 + erf(x * (1/sqrt2)))
    nodes = [
        helper.make_node("Mul", ["x", "inv_sqrt2"], ["d"], name="scale"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["one", "e"], ["a"], name="add"),
        helper.make_node("Mul", ["half", "x"], ["h"], name="half_x"),
        helper.make_node("Mul", ["h", "a"], ["y"], name="mul"),
    ]
    return nodes, [_const("inv_sqrt2", 1 / math.sqrt(2)), _const("one", 1.0), _const("half", 0.5)]


def _erf_half_first():  # x * ((1 + erf(x / sqrt2)) * 0.5)
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add"),
        helper.make_node("Mul", ["a", "half"], ["ah"], name="mul_half"),
        helper.make_node("Mul", ["ah", "x"], ["y"], name="mul"),
    ]
    return nodes, [_const("sqrt2", math.sqrt(2)), _const("one", 1.0), _const("half", 0.5)]


def _hard_sigmoid(out, alpha=1 / 6):  # as torch exports nn.Hardsigmoid
    return helper.make_node("HardSigmoid", ["x"], [out], name="hsig", alpha=alpha, beta=0.5)


def _tanh_gelu():  # GPT-2's gelu_new: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
    nodes = [
        helper.make_node("Pow", ["x", "three"], ["cube"], name="pow"),
        helper.make_node("Mul", ["c", "cube"], ["cc"], name="mul_c"),
        helper.make_node("Add", ["x", "cc"], ["inner"], name="add_inner"),
        helper.make_node("Mul", ["k", "inner"], ["t_in"], name="mul_k"),
        helper.make_node("Tanh", ["t_in"], ["t"], name="tanh"),
        helper.make_node("Add", ["t", "one"], ["a"], name="add"),
        helper.make_node("Mul", ["half", "x"], ["h"], name="half_x"),
        helper.make_node("Mul", ["h", "a"], ["y"], name="mul"),
    ]
    consts = [_const("three", 3.0), _const("c", 0.044715), _const("k", math.sqrt(2 / math.pi))]
    return nodes, consts + [_const("one", 1.0), _const("half", 0.5)]


FORMS = {
    "Erf form (torch)": (_erf_torch, "gelu", "Erf form"),
    "Erf form (BERT)": (_erf_hf, "gelu", "Erf form"),
    "Erf form (half first)": (_erf_half_first, "gelu", "Erf form"),
    "tanh form": (_tanh_gelu, "gelu", "tanh form"),
    "Gelu op": (lambda: ([helper.make_node("Gelu", ["x"], ["y"], name="g")], []), "gelu", "Gelu (approximate=none)"),
    "Sigmoid": (lambda: ([helper.make_node("Sigmoid", ["x"], ["y"], name="s")], []), "sigmoid", "Sigmoid"),
    "Tanh": (lambda: ([helper.make_node("Tanh", ["x"], ["y"], name="t")], []), "tanh", "Tanh"),
    "SiLU": (
        lambda: ([helper.make_node("Sigmoid", ["x"], ["s"], name="s"), helper.make_node("Mul", ["s", "x"], ["y"])], []),
        "silu",
        "x * Sigmoid(x)",
    ),
    "HardSigmoid": (lambda: ([_hard_sigmoid("y")], []), "hardsigmoid", "HardSigmoid"),
    "HardSwish op": (lambda: ([helper.make_node("HardSwish", ["x"], ["y"], name="hs")], []), "hardswish", "HardSwish"),
    "x * HardSigmoid(x)": (
        lambda: ([_hard_sigmoid("s"), helper.make_node("Mul", ["x", "s"], ["y"], name="m")], []),
        "hardswish",
        "x * HardSigmoid(x)",
    ),
}


def _x(seed=0):
    return np.random.default_rng(seed).normal(0, 3, (2, 50)).astype(np.float32)


@pytest.mark.parametrize("form", FORMS)
def test_each_form_becomes_one_spiking_activation_with_the_reference_output(form):
    build, function, form_name = FORMS[form]
    nodes, consts = build()
    model = _model(nodes, consts, opset=20 if form == "Gelu op" else 17)
    new, report = rewrite_model(model, RewriteOptions(activations=ALL))
    assert [(a["function"], a["form"]) for a in report.activations] == [(function, form_name)]
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation"]
    x = _x()
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, shipped_activation(function, 12)))
    assert report.sites == []  # no softmax: activations alone are something to convert


@pytest.mark.parametrize("op, inputs", [("Gelu", ["x"]), ("FastGelu", ["x", "b"]), ("BiasGelu", ["x", "b"])])
def test_onnxruntime_gelu_ops_with_their_bias_added_first(op, inputs):
    model = _model(
        [helper.make_node(op, inputs, ["y"], name="g", domain="com.microsoft")],
        [_const("b", np.linspace(-1, 1, 50))],
        domains=["com.microsoft"],
    )
    new, report = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    assert report.activations[0]["form"] == f"com.microsoft::{op}"
    x = _x()
    ops = [n.op_type for n in new.graph.node]
    assert ops == (["Add", "SpikingActivation"] if len(inputs) == 2 else ["SpikingActivation"])
    fed = x + np.linspace(-1, 1, 50).astype(np.float32) if len(inputs) == 2 else x
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(fed, shipped_activation("gelu", 12)))


def test_without_activations_asked_they_stay_as_they_are():
    nodes, consts = _erf_torch()
    with pytest.raises(SitOnnxError, match="no Softmax"):
        rewrite_model(_model(nodes, consts))
    with pytest.raises(SitOnnxError, match="nor sigmoid activation"):
        rewrite_model(_model(nodes, consts), RewriteOptions(activations=("sigmoid",)))


def test_only_the_asked_functions_are_converted():
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="s"),
        helper.make_node("Tanh", ["s"], ["y"], name="t"),
    ]
    _, report = rewrite_model(_model(nodes), RewriteOptions(activations=("tanh",)))
    assert [a["function"] for a in report.activations] == ["tanh"] and report.activation_misses == []
    _, report = rewrite_model(_model(nodes), RewriteOptions(activations=("tanh", "silu")))
    assert [a["function"] for a in report.activations] == ["tanh"]
    assert report.activation_misses == [
        {
            "name": "s",
            "graph": "main",
            "function": "Sigmoid",
            "reason": "a Sigmoid that is no SiLU (x * Sigmoid(x)), and sigmoid was not asked for",
        }
    ]


def test_silu_needs_the_sigmoid_of_the_same_x():
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="s"),
        helper.make_node("Neg", ["x"], ["n"], name="neg"),
        helper.make_node("Mul", ["s", "n"], ["y"], name="mul"),
    ]
    new, report = rewrite_model(_model(nodes), RewriteOptions(activations=("silu", "sigmoid")))
    assert [(a["function"], a["name"]) for a in report.activations] == [("sigmoid", "s")]
    assert sorted(n.op_type for n in new.graph.node) == ["Mul", "Neg", "SpikingActivation"]


def _erf_variant(**changes):
    nodes, consts = _erf_torch()
    values = {c.name: float(numpy_helper.to_array(c)) for c in consts}
    values.update(changes)
    return nodes, [_const(k, v) for k, v in values.items()]


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"one": 2.0}, "the Add after it does not add 1"),
        ({"half": 0.25}, "no factor 0.5 after the products"),
        ({"sqrt2": 2.0}, "the nodes around it compute no GELU (off by"),
    ],
)
def test_a_near_gelu_is_left_alone_saying_why(changes, reason):
    nodes, consts = _erf_variant(**changes)
    model = _model(nodes + [helper.make_node("Softmax", ["y"], ["z"], name="sm")], consts)
    model.graph.output[0].name = "z"
    new, report = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    assert report.activations == []
    assert len(report.activation_misses) == 1 and report.activation_misses[0]["reason"].startswith(reason)
    assert "Erf" in [n.op_type for n in new.graph.node]


def test_an_intermediate_used_elsewhere_keeps_the_gelu():
    nodes, consts = _erf_torch()
    model = _model(nodes, consts, extra_outputs=("a",))
    with pytest.raises(SitOnnxError, match="no Softmax"):
        rewrite_model(model, RewriteOptions(activations=("gelu",)))
    misses = []
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.activations import find_activation_sites

    assert find_activation_sites(gs.import_onnx(model), {"gelu"}, misses) == []
    assert misses[0].reason == "'a' is a graph output"


def test_a_chain_reading_another_input_is_no_gelu():
    nodes, consts = _erf_torch()
    nodes[0] = helper.make_node("Div", ["w", "sqrt2"], ["d"], name="div")  # erf of another tensor
    model = _model(nodes, consts)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 50]))
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.activations import find_activation_sites

    misses = []
    assert find_activation_sites(gs.import_onnx(model), {"gelu"}, misses) == []
    assert misses[0].reason == "it also depends on 'w', not only on 'x'"


def test_a_double_input_is_left_alone_naming_its_type():
    model = _model([helper.make_node("Tanh", ["x"], ["y"], name="t")], dtype=TensorProto.DOUBLE)
    with pytest.raises(SitOnnxError, match="no Softmax"):
        rewrite_model(model, RewriteOptions(activations=("tanh",)))
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.activations import find_activation_sites

    misses = []
    find_activation_sites(gs.import_onnx(model), {"tanh"}, misses)
    assert "has type float64; SpikingActivation takes float32 or float16" in misses[0].reason


@pytest.mark.parametrize("opset", [13, 14, 15, 17])
def test_float16_model_at_every_opset(opset):
    model = _model([helper.make_node("Sigmoid", ["x"], ["y"], name="s")], opset=opset, dtype=TensorProto.FLOAT16)
    new, report = rewrite_model(model, RewriteOptions(activations=("sigmoid",)))
    ops = [n.op_type for n in new.graph.node]
    assert ops == (["Cast", "SpikingActivation", "Cast"] if opset < 15 else ["SpikingActivation"])
    x = _x().astype(np.float16)
    got = run(new, {"x": x})[0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, spiking_activation(x, shipped_activation("sigmoid", 12)))


def test_softmax_and_activations_together_inline_and_chain():
    nodes, consts = _erf_torch()
    model = _model(nodes + [helper.make_node("Softmax", ["y"], ["z"], name="sm")], consts)
    model.graph.output[0].name = "z"
    x = _x()
    outputs = []
    for options in (
        RewriteOptions(activations=ALL),
        RewriteOptions(activations=ALL, inline=True),
        RewriteOptions(activations=ALL, fuse=False, sigmoid=True),
    ):
        new, report = rewrite_model(model, options)
        assert len(report.converted) == 1 and len(report.activations) == 1
        # the Sigmoid the softmax pass inserts (--sigmoid --chain) is no activation site
        assert [a["name"] for a in report.activations] == ["erf"]
        outputs.append(run(new, {"x": x})[0])
        if options.inline:
            assert not any(n.domain == domain.DOMAIN for n in new.graph.node) and not new.functions
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)


def test_a_converted_model_keeps_its_activation_body_when_converted_again():
    nodes, consts = _erf_torch()
    model = _model(nodes + [helper.make_node("Softmax", ["y"], ["z"], name="sm")], consts)
    model.graph.output[0].name = "z"
    once, _ = rewrite_model(model, RewriteOptions(activations=("gelu",), first=0))
    twice, _ = rewrite_model(once, RewriteOptions())
    assert domain.SPIKING_ACTIVATION in [f.name for f in twice.functions]
    x = _x()
    np.testing.assert_array_equal(
        run(twice, {"x": x})[0], run(rewrite_model(model, RewriteOptions(activations=("gelu",)))[0], {"x": x})[0]
    )


def test_activation_sets_given_as_files(tmp_path):
    fitted = fit_activation("tanh", 12, (-3, 3), restarts=1, iterations=30, polish_rounds=1)
    path = tmp_path / "tanh.json"
    fitted.save(path)
    model = _model([helper.make_node("Tanh", ["x"], ["y"], name="t")])
    new, report = rewrite_model(model, RewriteOptions(activations=("tanh",), activation_params=(str(path),)))
    assert report.activations[0]["range"] == [-3.0, 3.0]
    x = _x()
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, fitted))
    with pytest.raises(SitOnnxError, match="holds a tanh set, but --activations does not name tanh"):
        rewrite_model(model, RewriteOptions(activations=("gelu",), activation_params=(str(path),)))
    with pytest.raises(SitOnnxError, match="two files for tanh"):
        rewrite_model(model, RewriteOptions(activations=("tanh",), activation_params=(str(path), str(path))))
    with pytest.raises(SitOnnxError, match=r"the tanh set has K=12; the activations take K=8 \(--activation-steps"):
        rewrite_model(model, RewriteOptions(steps=8, activations=("tanh",), activation_params=(str(path),)))
    with pytest.raises(SitOnnxError, match="the tanh set has K=12; the activations take K=16"):
        options = RewriteOptions(activations=("tanh",), activation_params=(str(path),), activation_steps=16)
        rewrite_model(model, options)
    # a file set of another K than the softmax's is taken when --activation-steps names its K
    new, report = rewrite_model(
        model, RewriteOptions(steps=8, activations=("tanh",), activation_params=(str(path),), activation_steps=12)
    )
    assert report.activations[0]["steps"] == 12 and report.steps == 8
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, fitted))


def test_no_shipped_set_for_other_steps():
    with pytest.raises(SitOnnxError, match="no shipped gelu set for K=6"):
        rewrite_model(softmax_model([2, 3]), RewriteOptions(steps=6, activations=("gelu",)))


@pytest.mark.parametrize(
    "text, parsed",
    [("none", ()), ("", ()), ("GELU, silu,gelu", ("gelu", "silu")), ("tanh", ("tanh",))],
)
def test_parse_activations(text, parsed):
    assert parse_activations(text) == parsed


def test_parse_activations_refuses_unknown_names():
    with pytest.raises(
        SitOnnxError, match="unknown activation 'relu'; known: gelu, silu, sigmoid, tanh, hardsigmoid, hardswish"
    ):
        parse_activations("gelu,relu")


@pytest.mark.parametrize("opset", [17, 20])
def test_torch_exports_of_every_activation(tmp_path, opset):
    torch = pytest.importorskip("torch")
    from sit_onnx.export.torch_export import export_module

    class QuickGELU(torch.nn.Module):  # CLIP's, as transformers writes it
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    for act, function in [
        (QuickGELU(), "silu"),
        (torch.nn.GELU(), "gelu"),
        (torch.nn.GELU(approximate="tanh"), "gelu"),
        (torch.nn.SiLU(), "silu"),
        (torch.nn.Sigmoid(), "sigmoid"),
        (torch.nn.Tanh(), "tanh"),
        (torch.nn.Hardsigmoid(), "hardsigmoid"),
        (torch.nn.Hardswish(), "hardswish"),
    ]:
        module = torch.nn.Sequential(torch.nn.Linear(50, 50), act)
        model = export_module(module, torch.zeros(2, 50), tmp_path / "m.onnx", opset=opset)
        new, report = rewrite_model(model, RewriteOptions(activations=ALL))
        assert [a["function"] for a in report.activations] == [function], act
        x = _x()
        original, converted = run(model, {model.graph.input[0].name: x})[0], run(new, {model.graph.input[0].name: x})[0]
        assert np.abs(original - converted).max() < 0.2


def _misses(model, functions):
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.activations import find_activation_sites
    from sit_onnx.graph.validate import infer_shapes

    misses = []
    sites = find_activation_sites(gs.import_onnx(infer_shapes(model)), functions, misses)
    return sites, [(m.name, m.reason) for m in misses]


def test_a_product_of_the_sum_with_itself_is_no_gelu():
    nodes, consts = _erf_torch()
    nodes[3] = helper.make_node("Mul", ["a", "a"], ["m"], name="mul")
    sites, misses = _misses(_model(nodes, consts), {"gelu"})
    assert sites == [] and misses == [("erf", "'a' feeds Mul, Mul, not one Mul")]


def test_constants_match_within_a_thousandth():
    nodes, consts = _erf_variant(one=1.0005)  # as a float16 export rounds them
    sites, _ = _misses(_model(nodes, consts), {"gelu"})
    assert [s.form for s in sites] == ["Erf form"]


@pytest.mark.parametrize("extra, found", [(11, True), (12, False)])
def test_a_chain_may_hold_sixteen_nodes(extra, found):
    """torch's Erf form (5 nodes) with Identity nodes before its Div: 16 nodes are walked, 17 are not."""
    nodes, consts = _erf_torch()
    hops = [helper.make_node("Identity", [f"i{k}" if k else "x"], [f"i{k + 1}"], name=f"id{k}") for k in range(extra)]
    nodes[0] = helper.make_node("Div", [f"i{extra}", "sqrt2"], ["d"], name="div")
    sites, misses = _misses(_model(hops + nodes, consts), {"gelu"})
    if found:
        assert len(sites) == 1 and len(sites[0].nodes) == 16
    else:
        assert misses == [("erf", "more than 16 nodes between 'x' and 'y'")]


def test_an_op_gelu_forms_do_not_use_is_no_gelu():
    nodes, consts = _erf_torch()
    negs = [helper.make_node("Neg", ["x"], ["n1"], name="neg1"), helper.make_node("Neg", ["n1"], ["n2"], name="neg2")]
    nodes[0] = helper.make_node("Div", ["n2", "sqrt2"], ["d"], name="div")
    sites, misses = _misses(_model(negs + nodes, consts), {"gelu"})
    assert sites == [] and misses[0][1].endswith("in the chain is not an elementwise op of the activations' forms")


def test_gelu_op_forms_names_and_a_bias_gelu_without_bias():
    tanh_gelu = _model([helper.make_node("Gelu", ["x"], ["y"], name="g", approximate="tanh")], opset=20)
    sites, _ = _misses(tanh_gelu, {"gelu"})
    assert [(s.name, s.form) for s in sites] == [("g", "Gelu (approximate=tanh)")]
    bare = _model(
        [helper.make_node("BiasGelu", ["x", ""], ["y"], name="bg", domain="com.microsoft")], domains=["com.microsoft"]
    )
    sites, misses = _misses(bare, {"gelu"})
    assert sites == [] and misses == [("bg", "BiasGelu without its bias input")]


def test_silu_site_names_and_a_sigmoid_kept_as_a_graph_output():
    named = [helper.make_node("Sigmoid", ["x"], ["s"], name="s"), helper.make_node("Mul", ["x", "s"], ["y"], name="m")]
    sites, _ = _misses(_model(named), {"silu"})
    assert [(s.name, s.function) for s in sites] == [("m", "silu")]
    kept = _model(named, extra_outputs=("s",))
    sites, _ = _misses(kept, {"silu", "sigmoid"})
    assert [(s.name, s.function) for s in sites] == [("s", "sigmoid")]  # s itself is an output: only a Sigmoid


def test_inserted_nodes_are_named_after_their_site():
    nodes, consts = _erf_torch()
    new, _ = rewrite_model(_model(nodes, consts), RewriteOptions(activations=("gelu",)))
    assert [n.name for n in new.graph.node] == ["erf/sit_SpikingActivation"]


def _true_hardsigmoid(x, alpha, beta):
    return np.clip(alpha * x.astype(np.float64) + beta, 0.0, 1.0)


@pytest.mark.parametrize(
    "alpha, beta, gain, shift",
    [(0.2, 0.5, 1.2, 0.0), (1 / 6, 0.6, 1.0, 0.6), (0.5, 0.6, 3.0, 0.6), (0.1, 0.3, 0.6, -1.2), (1e-3, 0.5, 6e-3, 0.0)],
)  # fmt: skip
def test_any_increasing_hardsigmoid_reads_torchs_of_an_affine_input(rng, alpha, beta, gain, shift):
    """ONNX's default (alpha 0.2, Keras 2's hard_sigmoid) and any other alpha > 0, beta: torch's
    HardSigmoid of 6 alpha x + 6 beta - 3, written as a Mul and an Add before the op."""
    model = _model([helper.make_node("HardSigmoid", ["x"], ["y"], name="hsig", alpha=alpha, beta=beta)])
    (site,), misses = _misses(model, {"hardsigmoid"})
    assert misses == [] and site.affine == pytest.approx((gain, shift)) and site.scale == 1.0
    assert site.form == f"HardSigmoid (alpha={alpha:g}, beta={beta:g})"
    new, report = rewrite_model(model, RewriteOptions(activations=("hardsigmoid",)))
    (entry,) = report.activations
    params = shipped_activation("hardsigmoid", 12)
    assert entry["input_map"] == pytest.approx([gain, shift]) and entry["replaced_with"][:2] == ["Mul", "Add"]
    assert entry["range"] == pytest.approx([(v - shift) / gain for v in params.input_range])
    x = rng.normal(0, 4 / gain, (2, 50)).astype(np.float32)
    (y,) = run(new, {"x": x})
    read = (x * np.float32(gain) + np.float32(shift)).astype(np.float32)
    np.testing.assert_array_equal(y, spiking_activation(read, params))
    assert np.abs(y - _true_hardsigmoid(x, alpha, beta)).max() <= params.neuron.max_error * 1.01 + 1e-6


@pytest.mark.parametrize("alpha, beta", [(0.0, 0.5), (-0.2, 0.5), (math.nan, 0.5), (0.2, math.inf)])
def test_a_hardsigmoid_that_does_not_increase_is_left_alone(alpha, beta):
    model = _model([helper.make_node("HardSigmoid", ["x"], ["y"], name="hsig", alpha=alpha, beta=beta)])
    sites, misses = _misses(model, {"hardsigmoid"})
    assert sites == [] and misses == [
        ("hsig", f"HardSigmoid (alpha={alpha:g}, beta={beta:g}): the sets compute an increasing HardSigmoid "
                 "(alpha > 0, both finite)")
    ]  # fmt: skip


def test_hardsigmoid_attributes_read_with_onnx_defaults():
    bare = _model([helper.make_node("HardSigmoid", ["x"], ["y"], name="hsig")])  # ONNX's alpha=0.2, beta=0.5
    (site,), _ = _misses(bare, {"hardsigmoid"})
    assert site.affine == pytest.approx((1.2, 0.0))
    _, misses = _misses(_model([_hard_sigmoid("y")]), {"hardswish"})
    assert misses == [
        ("hsig", "a HardSigmoid that is no HardSwish (x * HardSigmoid(x)), and hardsigmoid was not asked for")
    ]


def _x_times_hardsigmoid(alpha, beta):
    return _model(
        [
            helper.make_node("HardSigmoid", ["x"], ["g"], name="hsig", alpha=alpha, beta=beta),
            helper.make_node("Mul", ["x", "g"], ["y"], name="times_x"),
        ]
    )


@pytest.mark.parametrize("form", ["direct", "gated"])
def test_x_times_another_hardsigmoid_is_hardswish_rescaled(rng, form):
    """x * HardSigmoid(alpha x + 0.5) = HardSwish(6 alpha x) / (6 alpha): HardSwish's set rescaled."""
    model = _x_times_hardsigmoid(0.2, 0.5)
    (site,), _ = _misses(model, {"hardswish"})
    assert (site.function, site.scale, site.affine) == ("hardswish", pytest.approx(1.2), None)
    assert site.form == "x * HardSigmoid (alpha=0.2, beta=0.5)(x)"
    options = RewriteOptions(activations=("hardswish",), activation_form=form)
    new, report = rewrite_model(model, options)
    assert report.activations[0]["input_scale"] == pytest.approx(1.2) and report.activations[0]["input_map"] is None
    params = shipped_activation(options.set_function("hardswish"), 12).rescaled(1.2)
    x = rng.normal(0, 2.5, (2, 50)).astype(np.float32)
    (y,) = run(new, {"x": x})
    np.testing.assert_allclose(y, spiking_activation(x, params), atol=1e-6)
    true = x.astype(np.float64) * _true_hardsigmoid(x, 0.2, 0.5)
    assert np.abs(y - true).max() <= params.neuron.max_error * 1.01 * (2.5 * 4 if form == "gated" else 1) + 1e-6


def test_x_times_a_shifted_hardsigmoid_converts_only_its_gate():
    """beta != 0.5 is no HardSwish: the gate alone converts where hardsigmoid is asked for."""
    model = _x_times_hardsigmoid(0.2, 0.6)
    sites, misses = _misses(model, {"hardswish"})
    assert sites == [] and misses == [
        ("hsig", "x * HardSigmoid (alpha=0.2, beta=0.6)(x): only beta=0.5 is HardSwish rescaled "
                 "(hardsigmoid converts the gate)")
    ]  # fmt: skip
    (site,), _ = _misses(model, {"hardswish", "hardsigmoid"})
    assert (site.function, site.output.name, site.affine) == ("hardsigmoid", "g", pytest.approx((1.2, 0.6)))
    _, misses = _misses(_x_times_hardsigmoid(20.0, 0.5), {"hardswish"})
    assert misses == [("hsig", "x * HardSigmoid (alpha=20, beta=0.5)(x): 6 * alpha outside [0.01, 100], "
                               "where a rescaled set stays in float32")]  # fmt: skip


def test_calibration_reads_a_sites_input_as_its_set_does():
    from sit_onnx.graph.convert import FoundActivation

    x = np.array([-1.0, 0.0, 2.0])
    assert FoundActivation("a", "main", "hardsigmoid", "x").neuron_input(x).tolist() == [-1.0, 0.0, 2.0]
    assert FoundActivation("a", "main", "silu", "x", 1.702).neuron_input(x) == pytest.approx([-1.702, 0, 3.404])
    hs = FoundActivation("a", "main", "hardsigmoid", "x", 1.0, (1.2, 0.6))
    assert hs.neuron_input(x) == pytest.approx([-0.6, 0.6, 3.0])


def test_half_times_x_in_either_order():
    nodes, consts = _erf_hf()
    nodes[3] = helper.make_node("Mul", ["x", "half"], ["h"], name="half_x")  # x * 0.5 instead of 0.5 * x
    sites, _ = _misses(_model(nodes, consts), {"gelu"})
    assert [(s.x.name, s.output.name) for s in sites] == [("x", "y")]


def test_an_inner_value_read_elsewhere_keeps_the_gelu():
    nodes, consts = _erf_torch()
    model = _model(nodes + [helper.make_node("Identity", ["d"], ["dd"], name="peek")], consts, extra_outputs=("dd",))
    sites, misses = _misses(model, {"gelu"})
    assert sites == [] and misses == [("erf", "its intermediate 'd' is used outside the activation")]


def test_a_consumer_list_names_every_op_or_nothing():
    nodes, consts = _erf_torch()
    nodes[2:] = [helper.make_node("Add", ["e", "one"], ["a"], name="add")]
    model = _model(nodes + [helper.make_node("Neg", ["a"], ["y"]), helper.make_node("Abs", ["a"], ["z"])], consts,
                   extra_outputs=("z",))  # fmt: skip
    _, misses = _misses(model, {"gelu"})
    assert misses == [("erf", "'a' feeds Neg, Abs, not one Mul")]
    dangling = _model(nodes[:2] + [helper.make_node("Add", ["e", "one"], ["y"], name="add")], consts)
    _, misses = _misses(dangling, {"gelu"})
    assert misses == [("erf", "'y' is a graph output")]


def _behind_an_unknown_op(nodes, input_type=TensorProto.FLOAT, output_type=TensorProto.UNDEFINED, opset=17, inits=()):
    """`nodes` reading h = Opaque(x), an op onnx's inference does not know (as after onnxruntime's
    own ops), and writing y: only x, above it, and the output say a type."""
    graph = helper.make_graph(
        [helper.make_node("Opaque", ["x"], ["h"], name="opaque", domain="vendor.ops"), *nodes],
        "g",
        [helper.make_tensor_value_info("x", input_type, [2, 50])],
        [helper.make_tensor_value_info("y", output_type, None)],
        initializer=list(inits),
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("vendor.ops", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _after_unknown_op(output_type):
    """Sigmoid(h) where h comes from an op onnx's inference does not know."""
    return _behind_an_unknown_op([helper.make_node("Sigmoid", ["h"], ["y"], name="s")], output_type=output_type)


def test_an_input_of_unknown_type_takes_the_outputs_or_says_so():
    sites, _ = _misses(_after_unknown_op(TensorProto.FLOAT16), {"sigmoid"})
    assert [(s.name, s.dtype) for s in sites] == [("s", np.dtype(np.float16))]
    sites, misses = _misses(_after_unknown_op(TensorProto.UNDEFINED), {"sigmoid"})
    assert sites == [] and misses == [("s", "input 'h' has type unknown; SpikingActivation takes float32 or float16")]


def test_report_names_the_sites_tensors_and_graph_and_keeps_unused_inputs():
    branch = helper.make_graph(
        [helper.make_node("Tanh", ["x"], ["b"], name="inner")], "branch", [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    )  # fmt: skip
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["y"], name="outer"),
        helper.make_node("If", ["flag"], ["z"], name="if", then_branch=branch, else_branch=branch),
    ]
    model = _model(nodes, extra_outputs=("z",))
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    model.graph.input.extend([flag, helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1])])
    new, report = rewrite_model(model, RewriteOptions(activations=("sigmoid", "tanh")))
    got = [(a["name"], a["graph"], a["input"], a["output"]) for a in report.activations]
    assert got == [("outer", "main", "x", "y")] + [("inner", "branch", "x", "b")] * 2  # then and else
    assert [i.name for i in new.graph.input] == ["x", "flag", "unused"]  # an unused input is the user's
    x = _x()
    y, z = run(new, {"x": x, "flag": np.array(True), "unused": np.zeros(1, np.float32)})
    np.testing.assert_array_equal(y, spiking_activation(x, shipped_activation("sigmoid", 12)))
    np.testing.assert_array_equal(z, spiking_activation(x, shipped_activation("tanh", 12)))  # inside the If


def _swish(beta=1.702, order=("x", "beta"), shared=False):
    """x * Sigmoid(beta * x), as CLIP's QuickGELU exports; `shared`: beta * x is also a graph output."""
    nodes = [
        helper.make_node("Mul", [{"x": "x", "beta": "beta"}[o] for o in order], ["bx"], name="scale"),
        helper.make_node("Sigmoid", ["bx"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["y"], name="quick"),
    ]
    return _model(nodes, [_const("beta", beta)], extra_outputs=("bx",) if shared else ())


@pytest.mark.parametrize("order", [("x", "beta"), ("beta", "x")])
def test_quick_gelu_is_silus_set_rescaled(order):
    """x * Sigmoid(1.702 x) = SiLU(1.702 x) / 1.702: one node computing exactly the SiLU reference on
    1.702 x over 1.702 (to float32 rounding), within the SiLU set's error of the function itself."""
    new, report = rewrite_model(_swish(order=order), RewriteOptions(activations=("silu",)))
    (site,) = report.activations
    assert (site["function"], site["form"], site["name"]) == ("silu", "x * Sigmoid(1.702 x) (QuickGELU)", "quick")
    assert site["input_scale"] == pytest.approx(1.702) and site["input"] == "x"
    assert site["range"] == pytest.approx([-8 / 1.702, 8 / 1.702])
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation"]
    x = _x()
    y = run(new, {"x": x})[0]
    beta = np.float32(1.702)
    silu = shipped_activation("silu", 12)
    np.testing.assert_allclose(y, spiking_activation(beta * x, silu) / beta, atol=1e-5)
    np.testing.assert_array_equal(y, spiking_activation(x, silu.rescaled(float(beta))))
    exact = x / (1 + np.exp(-1.702 * x))
    assert np.abs(y - exact).max() < 0.12 and np.abs(y - spiking_activation(x, silu)).max() > 0.1


def test_a_scale_read_elsewhere_stays_and_other_betas_say_theirs():
    new, report = rewrite_model(_swish(shared=True), RewriteOptions(activations=("silu",)))
    assert sorted(n.op_type for n in new.graph.node) == ["Mul", "SpikingActivation"]  # bx is still an output
    x = _x()
    np.testing.assert_allclose(run(new, {"x": x})[1], 1.702 * x, rtol=1e-6)
    _, report = rewrite_model(_swish(beta=2.5), RewriteOptions(activations=("silu",)))
    assert [(a["form"], a["input_scale"]) for a in report.activations] == [("x * Sigmoid(2.5 x)", 2.5)]


@pytest.mark.parametrize("beta", [-1.0, 0.0, 0.005, 200.0])
def test_a_beta_outside_the_window_is_no_swish(beta):
    """A rescaled set must stay in float32 (beta in [0.01, 100]); beta <= 0 is no Swish at all."""
    sites, misses = _misses(_swish(beta=beta), {"silu"})
    assert sites == [] and misses == [
        ("sig", "a Sigmoid that is no SiLU (x * Sigmoid(x)), and sigmoid was not asked for")
    ]
    sites, _ = _misses(_swish(beta=beta), {"silu", "sigmoid"})
    assert [s.function for s in sites] == ["sigmoid"]


@pytest.mark.parametrize("beta", [0.01, 100.0])
def test_the_window_edges_are_swishes(beta):
    sites, _ = _misses(_swish(beta=beta), {"silu"})
    assert [(s.function, s.scale) for s in sites] == [("silu", pytest.approx(beta))]


def test_a_scale_of_another_tensor_is_no_swish():
    """Sigmoid(beta * z) * x with z not x, or a product of two variables, is left to the gate."""
    nodes = [
        helper.make_node("Neg", ["x"], ["z"], name="neg"),
        helper.make_node("Mul", ["z", "beta"], ["bz"], name="scale"),
        helper.make_node("Sigmoid", ["bz"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["y"], name="m"),
    ]
    sites, _ = _misses(_model(nodes, [_const("beta", 1.702)]), {"silu", "sigmoid"})
    assert [s.function for s in sites] == ["sigmoid"]
    nodes[1] = helper.make_node("Mul", ["x", "z"], ["bz"], name="scale")
    sites, _ = _misses(_model(nodes), {"silu", "sigmoid"})
    assert [s.function for s in sites] == ["sigmoid"]


def test_quick_gelu_asked_as_gelu_says_how_to_convert_it():
    sites, misses = _misses(_swish(), {"gelu"})
    assert sites == [] and misses == [
        ("sig", "x * Sigmoid(1.702 x) (QuickGELU) is SiLU(1.702 x) / 1.702, not GELU: add silu to --activations")
    ]
    for model in (_swish(beta=2.5), _model([helper.make_node("Sigmoid", ["x"], ["y"], name="s")])):
        assert _misses(model, {"gelu"}) == ([], [])  # another Swish or a plain Sigmoid: nothing to say
    square = [helper.make_node("Sigmoid", ["x"], ["s"], name="s"), helper.make_node("Mul", ["s", "s"], ["y"], name="m")]
    assert _misses(_model(square), {"gelu"}) == ([], [])


def test_rescaled_sets_divide_all_but_the_slopes():
    silu = shipped_activation("silu", 12)
    half = silu.rescaled(2.0)
    n, h = silu.neuron, half.neuron
    for name in ("thresholds", "resets", "weights", "input_range"):
        assert getattr(h, name) == tuple(v / 2 for v in getattr(n, name)), name
    assert half.bias == silu.bias / 2 and half.tails == (
        silu.tails[0],
        silu.tails[1] / 2,
        silu.tails[2],
        silu.tails[3] / 2,
    )
    assert h.meta["input_scale"] == 2.0 and h.rmse == n.rmse / 2 and h.max_error == n.max_error / 2
    assert silu.neuron.meta.get("input_scale") is None  # the shipped set is left as it was
    x = np.linspace(-20, 20, 4001).astype(np.float32)  # tails included: slope 1 above, 0 below
    np.testing.assert_array_equal(spiking_activation(x, half), spiking_activation(2 * x, silu) / 2)
    for beta in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(SitOnnxError, match="rescaled by a finite beta > 0"):
            silu.rescaled(beta)


def _quick_gelu_op(**attrs):
    node = helper.make_node("QuickGelu", ["x"], ["y"], name="qg", domain="com.microsoft", **attrs)
    return _model([node], domains=["com.microsoft"])


@pytest.mark.parametrize("alpha", [None, 1.0, 2.5])
def test_onnxruntimes_quick_gelu_is_a_swish_of_its_alpha(alpha):
    """com.microsoft::QuickGelu is x * Sigmoid(alpha x), alpha 1.702 unless set (as onnxruntime
    computes it): SiLU's set rescaled by alpha, the plain set at alpha 1."""
    model = _quick_gelu_op(**({} if alpha is None else {"alpha": alpha}))
    new, report = rewrite_model(model, RewriteOptions(activations=("silu",)))
    beta = 1.702 if alpha is None else alpha
    assert [(a["form"], a["input_scale"]) for a in report.activations] == [
        (f"com.microsoft::QuickGelu (alpha={beta:.4g})", pytest.approx(beta))
    ]
    x = _x()
    silu = shipped_activation("silu", 12)
    want = spiking_activation(x, silu.rescaled(beta) if beta != 1.0 else silu)
    np.testing.assert_array_equal(run(new, {"x": x})[0], want)
    original = run(model, {"x": x})[0]
    assert np.abs(run(new, {"x": x})[0] - original).max() < 0.15


def test_onnxruntimes_quick_gelu_left_alone_says_why():
    _, misses = _misses(_quick_gelu_op(), {"gelu"})
    assert misses == [
        ("qg", "com.microsoft::QuickGelu (alpha=1.702) is SiLU(1.702 x) / 1.702, not GELU: add silu to --activations")
    ]
    _, misses = _misses(_quick_gelu_op(alpha=1000.0), {"silu"})
    assert misses == [
        (
            "qg",
            "com.microsoft::QuickGelu (alpha=1000): alpha outside [0.01, 100], where a rescaled set stays in float32",
        )
    ]
    assert _misses(_quick_gelu_op(), {"sigmoid", "tanh"}) == ([], [])


def test_an_erf_feeding_nothing_says_so_and_unknown_functions_are_named():
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.activations import find_activation_sites

    nodes = [helper.make_node("Erf", ["x"], ["e"], name="erf"), helper.make_node("Relu", ["x"], ["y"], name="r")]
    assert _misses(_model(nodes), {"gelu"}) == ([], [("erf", "'e' feeds nothing, not one Add")])
    with pytest.raises(ValueError) as raised:
        find_activation_sites(gs.import_onnx(_model(nodes)), {"relu", "gelu", "elu"})
    assert str(raised.value) == f"unknown activations ['elu', 'relu']; known: {', '.join(ALL)}"


def test_onnx_swish_op_alpha_window_and_a_three_term_sum_is_no_add():
    swish = _model([helper.make_node("Swish", ["x"], ["y"], name="sw", alpha=1000.0)], opset=24)
    assert _misses(swish, {"silu"}) == (
        [],
        [("sw", "Swish with alpha=1000: outside [0.01, 100], where a rescaled set stays in float32")],
    )
    sites, _ = _misses(_model([helper.make_node("Swish", ["x"], ["y"], name="sw")], opset=24), {"silu"})
    assert [(s.form, s.scale) for s in sites] == [("Swish (alpha=1)", 1.0)]
    nodes, consts = _erf_torch()
    nodes[2] = helper.make_node("Sum", ["e", "one", "zero"], ["a"], name="add")
    sites, misses = _misses(_model(nodes, consts + [_const("zero", 0.0)]), {"gelu"})
    assert sites == [] and misses == [("erf", "'e' feeds Sum, not one Add")]
    nodes[2] = helper.make_node("Sum", ["e", "one"], ["a"], name="add")
    sites, _ = _misses(_model(nodes, consts), {"gelu"})
    assert [s.form for s in sites] == ["Erf form"]


def test_constants_are_seen_through_castlike_only_from_the_default_domain():
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.matchers.base import constant_value

    half = gs.Constant("half", np.array(0.5, np.float32))
    x, cast, other = gs.Variable("x", dtype=np.float16), gs.Variable("c"), gs.Variable("o")
    gs.Node("CastLike", inputs=[half, x], outputs=[cast])
    assert constant_value(cast) == 0.5
    gs.Node("CastLike", inputs=[half, x], outputs=[other]).domain = "vendor"
    assert constant_value(other) is None
    variable = gs.Variable("v")
    cast_variable = gs.Variable("cv")
    gs.Node("CastLike", inputs=[variable, x], outputs=[cast_variable])
    assert constant_value(cast_variable) is None


def test_constant_nodes_of_either_default_domain_name_and_every_value_attribute():
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.matchers.base import constant_value

    for attrs, want in [
        ({"value_floats": [0.5, 2.0]}, [0.5, 2.0]),
        ({"value_float": 0.5}, 0.5),
        ({"value_ints": [1, 2]}, [1, 2]),
        ({"value_int": 3}, 3),
    ]:
        for default in ("", "ai.onnx"):
            out = gs.Variable("c")
            node = gs.Node("Constant", attrs=attrs, outputs=[out])
            node.domain = default
            np.testing.assert_array_equal(constant_value(out), want)
    elsewhere = gs.Variable("e")
    gs.Node("Constant", attrs={"value_float": 0.5}, outputs=[elsewhere]).domain = "vendor"
    assert constant_value(elsewhere) is None


def _gelu_then_softmax():
    nodes, consts = _erf_torch()
    model = _model(nodes + [helper.make_node("Softmax", ["y"], ["z"], name="sm")], consts)
    model.graph.output[0].name = "z"
    return model


@pytest.mark.parametrize("inline", [False, True])
def test_activations_take_their_own_steps_on_kernels_bodies_and_inlined(inline):
    """Softmax at K=8, GELU at K=16: the SpikingActivation body unrolls its own 16 steps (not the
    K=8 SpikingExp), and kernels, function bodies and the inlined graph give the references."""
    from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
    from sit_onnx.neurons.params import SHIFT_RANGE
    from sit_onnx.runtime import SessionSpec, make_session

    options = RewriteOptions(steps=8, activations=("gelu",), activation_steps=16, inline=inline)
    new, report = rewrite_model(_gelu_then_softmax(), options)
    assert report.steps == 8 and [a["steps"] for a in report.activations] == [16]
    x = _x()
    gelu = spiking_activation(x, shipped_activation("gelu", 16))
    expected = spiking_softmax(gelu, shipped_params(8, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6)
    if inline:
        assert sum(n.op_type == "GreaterOrEqual" for n in new.graph.node) == 8 + 16
        return
    bodies = {f.name: sum(n.op_type == "GreaterOrEqual" for n in f.node) for f in new.functions}
    assert bodies[domain.SPIKING_EXP] == 8 and bodies[domain.SPIKING_ACTIVATION] == 16
    kernels = make_session(new, SessionSpec(provider="cpu", use_library=True)).run(None, {"x": x})[0]
    np.testing.assert_allclose(kernels, expected, atol=1e-6)


def test_activation_steps_must_agree_across_conversions():
    once, _ = rewrite_model(_gelu_then_softmax(), RewriteOptions(activations=("gelu",), activation_steps=16, first=0))
    # converting the softmax later keeps the K=16 activation body
    twice, _ = rewrite_model(once, RewriteOptions())
    bodies = {f.name: sum(n.op_type == "GreaterOrEqual" for n in f.node) for f in twice.functions}
    assert bodies[domain.SPIKING_ACTIVATION] == 16 and bodies[domain.SPIKING_EXP] == 12
    x = _x()
    direct, _ = rewrite_model(_gelu_then_softmax(), RewriteOptions(activations=("gelu",), activation_steps=16))
    np.testing.assert_array_equal(run(twice, {"x": x})[0], run(direct, {"x": x})[0])
    nodes, consts = _erf_torch()  # a GELU, then a Tanh: the Tanh converted first at K=16, the GELU later at 12
    model = _model(nodes + [helper.make_node("Tanh", ["y"], ["z"], name="tanh")], consts)
    model.graph.output[0].name = "z"
    first, _ = rewrite_model(model, RewriteOptions(activations=("tanh",), activation_steps=16))
    message = (
        r"^SpikingActivation nodes with K = 12, 16 in one model; the activations of a model share one K "
        r"\(convert the rest with that --activation-steps\)$"
    )
    with pytest.raises(SitOnnxError, match=message):
        rewrite_model(first, RewriteOptions(activations=("gelu",)))


def test_activation_steps_without_activations_is_refused():
    with pytest.raises(
        SitOnnxError, match="^--activation-steps sets the K of converted activations; --activations names none$"
    ):
        rewrite_model(_gelu_then_softmax(), RewriteOptions(activation_steps=16))
    with pytest.raises(
        SitOnnxError, match="^--activation-form gated shapes converted activations; --activations names"
    ):
        rewrite_model(_gelu_then_softmax(), RewriteOptions(activation_form="gated"))
    rewrite_model(_gelu_then_softmax(), RewriteOptions(activation_form="direct"))  # the default, said or not


def _erf_with_divisor(divisor: np.ndarray):
    nodes, consts = _erf_torch()
    return nodes, [_const("sqrt2", divisor)] + [c for c in consts if c.name != "sqrt2"]


def test_a_constant_of_shape_ones_within_the_rank_is_one_number():
    """onnxslim folds constants to [1, 1, 1]: such a GELU had died of an internal error."""
    model = _model(*_erf_with_divisor(np.full((1, 1), math.sqrt(2))))
    new, report = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    assert [(a["function"], a["form"]) for a in report.activations] == [("gelu", "Erf form")]
    x = _x()
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, shipped_activation("gelu", 12)))


@pytest.mark.parametrize(
    "divisor, shapeless, reason",
    [
        (
            np.full((1, 1, 1), math.sqrt(2)),
            False,
            "its constant 'sqrt2' of shape [1, 1, 1] may raise the rank of 'x' (2)",
        ),
        (
            np.full((1, 1), math.sqrt(2)),
            True,
            "its constant 'sqrt2' of shape [1, 1] may raise the rank of 'x' (unknown)",
        ),
        (np.full((2, 1), math.sqrt(2)), False, "its constant 'sqrt2' holds 2 values, not one"),
    ],
)
def test_a_constant_that_is_not_one_number_of_each_element_leaves_the_gelu(divisor, shapeless, reason):
    model = _model(*_erf_with_divisor(divisor))
    if shapeless:
        model.graph.input[0].type.tensor_type.ClearField("shape")
    sites, misses = _misses(model, {"gelu"})
    assert sites == [] and misses == [("erf", reason)]
    with pytest.raises(SitOnnxError, match="no Softmax .* nor gelu activation to convert"):
        rewrite_model(model, RewriteOptions(activations=("gelu",)))


def _swish_with_beta_of_shape(shape):
    nodes = [
        helper.make_node("Mul", ["x", "beta"], ["bx"], name="scale"),
        helper.make_node("Sigmoid", ["bx"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["y"], name="quick"),
    ]
    return _model(nodes, [_const("beta", np.full(shape, 1.702))])


def test_a_swish_scale_that_raises_the_rank_is_no_swish():
    """beta of shape [1, 1, 1] on a rank-2 x makes y rank 3: the neuron on x had silently dropped
    the leading 1 (onnxslim folds such constants). Within x's rank it is one number."""
    sites, misses = _misses(_swish_with_beta_of_shape((1, 1, 1)), {"silu"})
    assert sites == [] and misses == [("sig", "its constant 'beta' of shape [1, 1, 1] may raise the rank of 'x' (2)")]
    sites, misses = _misses(_swish_with_beta_of_shape((1, 1, 1)), {"silu", "sigmoid"})
    assert [(s.function, s.output.name) for s in sites] == [("sigmoid", "s")] and misses == []
    new, _ = rewrite_model(_swish_with_beta_of_shape((1, 1, 1)), RewriteOptions(activations=("silu", "sigmoid")))
    x = _x()
    assert run(new, {"x": x})[0].shape == (1, *x.shape)
    (site,), _ = _misses(_swish_with_beta_of_shape((1, 1)), {"silu"})
    assert (site.function, site.scale) == ("silu", pytest.approx(1.702))
    new, _ = rewrite_model(_swish_with_beta_of_shape((1, 1)), RewriteOptions(activations=("silu",)))
    assert run(new, {"x": x})[0].shape == x.shape


def test_an_affine_offset_that_raises_the_rank_leaves_the_clamp():
    """Clip(x + 3, 0, 6) / 6 with a 3 of shape [1, 1, 1] on a rank-2 x is no HardSigmoid of x."""
    nodes = [
        helper.make_node("Add", ["x", "three"], ["u"], name="add"),
        helper.make_node("Clip", ["u", "lo", "hi"], ["r"], name="clip"),
        helper.make_node("Div", ["r", "six"], ["y"], name="div"),
    ]
    consts = [_const("three", np.full((1, 1, 1), 3.0)), _const("lo", 0.0), _const("hi", 6.0), _const("six", 6.0)]
    sites, misses = _misses(_model(nodes, consts), {"hardsigmoid"})
    assert sites == [] and misses == [("clip", "its constant 'three' of shape [1, 1, 1] may raise the rank of 'x' (2)")]
    consts[0] = _const("three", np.full((1, 1), 3.0))
    (site,), _ = _misses(_model(nodes, consts), {"hardsigmoid"})
    assert site.function == "hardsigmoid"


def test_ops_of_functions_not_asked_for_are_passed_silently():
    """A HardSigmoid, a clamp's ops and a Tanh are no start when only silu is asked: no miss."""
    nodes = [
        helper.make_node("HardSigmoid", ["x"], ["a"], name="hs"),
        helper.make_node("Relu", ["a"], ["b"], name="r"),
        helper.make_node("Tanh", ["b"], ["c"], name="t"),
        helper.make_node("Max", ["c", "zero"], ["d"], name="mx"),
        helper.make_node("Min", ["d", "six"], ["y"], name="mn"),
    ]
    assert _misses(_model(nodes, [_const("zero", 0.0), _const("six", 6.0)]), {"silu"}) == ([], [])
    clip = [
        helper.make_node("Add", ["x", "three"], ["u"], name="add"),
        helper.make_node("Clip", ["u", "zero", "six"], ["c"], name="clip"),
        helper.make_node("Div", ["c", "six"], ["y"], name="div"),
    ]
    consts = [_const("three", 3.0), _const("zero", 0.0), _const("six", 6.0)]
    assert _misses(_model(clip, consts), {"silu"}) == ([], [])


def test_a_clamp_of_two_ops_is_matched_once():
    """x * Min(Max(x + 3, 0), 6) / 6: the Min is part of the site, not a start of its own."""
    nodes = [
        helper.make_node("Add", ["x", "three"], ["u"], name="add"),
        helper.make_node("Max", ["u", "zero"], ["a"], name="mx"),
        helper.make_node("Min", ["a", "six"], ["b"], name="mn"),
        helper.make_node("Div", ["b", "six"], ["c"], name="div"),
        helper.make_node("Mul", ["x", "c"], ["y"], name="mul"),
    ]
    model = _model(nodes, [_const("three", 3.0), _const("zero", 0.0), _const("six", 6.0)])
    sites, misses = _misses(model, {"hardswish", "hardsigmoid"})
    assert [(s.function, s.form) for s in sites] == [("hardswish", "x * Min(Max(x + 3, 0), 6) / 6")] and misses == []


def test_only_a_product_of_the_gate_is_a_swish():
    """x * Sigmoid(x + 1) (an Add, not a scale), x * HardSigmoid(2 x) (no Sigmoid) and
    x + Sigmoid(1.702 x) (a sum) are no Swish: the gate alone converts, and gelu says nothing."""
    shifted = [
        helper.make_node("Add", ["x", "c"], ["xc"], name="shift"),
        helper.make_node("Sigmoid", ["xc"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["y"], name="m"),
    ]
    sites, _ = _misses(_model(shifted, [_const("c", 1.0)]), {"silu", "sigmoid"})
    assert [(s.function, s.scale) for s in sites] == [("sigmoid", 1.0)]
    hard = [
        helper.make_node("Mul", ["x", "c"], ["xc"], name="scale"),
        helper.make_node("HardSigmoid", ["xc"], ["s"], name="hs", alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["x", "s"], ["y"], name="m"),
    ]
    sites, _ = _misses(_model(hard, [_const("c", 2.0)]), {"hardswish", "hardsigmoid"})
    assert [(s.function, s.scale) for s in sites] == [("hardsigmoid", 1.0)]
    summed = _swish()
    summed.graph.node[2].op_type = "Add"
    assert _misses(summed, {"gelu"}) == ([], [])


def test_a_scale_read_by_another_node_stays():
    model = _swish(beta=2.0)
    model.graph.node.append(helper.make_node("Neg", ["bx"], ["n"], name="neg"))
    model.graph.output.append(helper.make_tensor_value_info("n", TensorProto.FLOAT, None))
    new, _ = rewrite_model(model, RewriteOptions(activations=("silu",)))
    assert sorted(n.op_type for n in new.graph.node) == ["Mul", "Neg", "SpikingActivation"]
    x = _x()
    y, n = run(new, {"x": x})
    np.testing.assert_allclose(n, -2 * x, rtol=1e-6)
    np.testing.assert_array_equal(y, spiking_activation(x, shipped_activation("silu", 12).rescaled(2.0)))


def test_onnx_swish_op_of_alpha_2_runs_silus_set_rescaled():
    model = _model([helper.make_node("Swish", ["x"], ["y"], name="sw", alpha=2.0)], opset=24)
    new, report = rewrite_model(model, RewriteOptions(activations=("silu",)))
    assert [(a["name"], a["form"], a["input_scale"]) for a in report.activations] == [("sw", "Swish (alpha=2)", 2.0)]
    x = _x()
    np.testing.assert_array_equal(
        run(new, {"x": x})[0], spiking_activation(x, shipped_activation("silu", 12).rescaled(2.0))
    )


def test_x_times_a_shifted_hardsigmoid_runs_its_gate_alone(rng):
    new, report = rewrite_model(
        _x_times_hardsigmoid(0.2, 0.6), RewriteOptions(activations=("hardswish", "hardsigmoid"))
    )
    assert [(a["name"], a["function"], a["form"]) for a in report.activations] == [
        ("hsig", "hardsigmoid", "HardSigmoid (alpha=0.2, beta=0.6)")
    ]
    assert "HardSigmoid" not in [n.op_type for n in new.graph.node]
    x = rng.normal(0, 2.5, (2, 50)).astype(np.float32)
    (y,) = run(new, {"x": x})
    gate = spiking_activation(x * np.float32(1.2) + np.float32(0.6), shipped_activation("hardsigmoid", 12))
    np.testing.assert_allclose(y, x * gate, atol=1e-6)
    assert np.abs(y - x * _true_hardsigmoid(x, 0.2, 0.6)).max() < 0.1


def _opaque_then_sigmoid_of_a_sum(opset):
    """Sigmoid(h + x): only x, above the unknown op, has a type (float16)."""
    nodes = [
        helper.make_node("Add", ["h", "x"], ["a"], name="add"),
        helper.make_node("Sigmoid", ["a"], ["y"], name="s"),
    ]
    return _behind_an_unknown_op(nodes, input_type=TensorProto.FLOAT16, opset=opset)


def test_a_type_traced_up_the_graph_sets_the_sites_casts():
    sites, _ = _misses(_opaque_then_sigmoid_of_a_sum(14), {"sigmoid"})
    assert [(s.name, s.dtype) for s in sites] == [("s", np.dtype(np.float16))]
    new, _ = rewrite_model(_opaque_then_sigmoid_of_a_sum(14), RewriteOptions(activations=("sigmoid",)))
    assert [n.op_type for n in new.graph.node] == ["Opaque", "Add", "Cast", "SpikingActivation", "Cast"]


def test_an_erf_forms_constants_give_its_type_where_nothing_else_does():
    nodes, consts = _erf_torch()
    on_h = [helper.make_node(n.op_type, [{"x": "h"}.get(i, i) for i in n.input], n.output, name=n.name) for n in nodes]
    halves = [_const(c.name, numpy_helper.to_array(c), np.float16) for c in consts]
    model = _behind_an_unknown_op(on_h, input_type=TensorProto.FLOAT16, inits=halves)
    sites, misses = _misses(model, {"gelu"})
    assert [(s.name, s.dtype) for s in sites] == [("erf", np.dtype(np.float16))] and misses == []


@pytest.mark.parametrize(
    "alpha, beta, function",
    [(2.0, 0.501, "hardswish"), (2.0, 0.503, "hardsigmoid"), (0.1, 0.50025, "hardsigmoid"), (0.1, 0.5001, "hardswish")],
)
def test_a_clamps_shift_within_a_thousandth_of_its_gain_still_makes_hardswish(alpha, beta, function):
    """x * Clip(alpha x + beta, 0, 1): torch's HardSigmoid of gain x + shift (gain 6 alpha, shift
    6 beta - 3); a shift up to a thousandth of max(1, gain) is read as none."""
    nodes = [
        helper.make_node("Mul", ["x", "alpha"], ["ax"], name="scale"),
        helper.make_node("Add", ["ax", "beta"], ["u"], name="shift"),
        helper.make_node("Clip", ["u", "zero", "one"], ["c"], name="clip"),
        helper.make_node("Mul", ["x", "c"], ["y"], name="mul"),
    ]
    consts = [_const("alpha", alpha), _const("beta", beta), _const("zero", 0.0), _const("one", 1.0)]
    sites, _ = _misses(_model(nodes, consts), {"hardswish", "hardsigmoid"})
    assert [s.function for s in sites] == [function]


def test_op_sites_are_named_after_their_node():
    """A report and the inserted nodes' names start from the op's own name."""
    ops = [
        (helper.make_node("HardSwish", ["x"], ["y"], name="hsw"), {"hardswish"}),
        (helper.make_node("Gelu", ["x"], ["y"], name="msg", domain="com.microsoft"), {"gelu"}),
        (helper.make_node("QuickGelu", ["x"], ["y"], name="qg", domain="com.microsoft"), {"silu"}),
    ]
    for node, functions in ops:
        sites, _ = _misses(_model([node], domains=["com.microsoft"]), functions)
        assert [s.name for s in sites] == [node.name]


def test_a_scale_by_another_domains_mul_is_no_swish():
    nodes = [
        helper.make_node("Mul", ["x", "beta"], ["bx"], name="scale", domain="vendor.ops"),
        helper.make_node("Sigmoid", ["bx"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["y"], name="quick"),
    ]
    sites, _ = _misses(_model(nodes, [_const("beta", 1.702)], domains=["vendor.ops"]), {"silu", "sigmoid"})
    assert [(s.function, s.scale) for s in sites] == [("sigmoid", 1.0)]


def test_rounded_hardswish_constants_still_match():
    """A float16 export rounds beta 0.5 and the 3 of x + 3 a little: within a thousandth they are read as such."""
    rounded = _model([helper.make_node("HardSigmoid", ["x"], ["y"], name="hsig", alpha=1 / 6, beta=0.5004)])
    sites, _ = _misses(rounded, {"hardsigmoid"})
    assert [(s.form, s.affine) for s in sites] == [("HardSigmoid", None)]
    sites, _ = _misses(_x_times_hardsigmoid(0.2, 0.5004), {"hardswish"})
    assert [(s.function, s.scale) for s in sites] == [("hardswish", pytest.approx(1.2))]
    nodes = [
        helper.make_node("Add", ["x", "three"], ["u"], name="add"),
        helper.make_node("Clip", ["u", "zero", "six"], ["c"], name="clip"),
        helper.make_node("Div", ["c", "six"], ["d"], name="div"),
        helper.make_node("Mul", ["x", "d"], ["y"], name="mul"),
    ]
    consts = [_const("three", 3.001), _const("zero", 0.0), _const("six", 6.0)]
    sites, _ = _misses(_model(nodes, consts), {"hardswish"})
    assert [s.form for s in sites] == ["x * Clip(x + 3, 0, 6) / 6"]


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_onnx_infers_the_shape_through_a_spiking_activation(opset):
    """onnx's shape inference reads the op's function body: a converted activation passes its input's
    shape on (the body's attribute check had squeezed every unit dim, which left the flag's rank, and
    with it every tensor the flag selects, unknown; before opset 14 the check's Reshape to a computed
    shape left the neuron's numbers, and all after them, without one), so tools that infer shapes
    downstream keep them."""
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "n", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    new, _ = rewrite_model(model, RewriteOptions(activations=("sigmoid",)))
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation", "Relu"]
    del new.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(new)
    dims = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info]
    assert dims == [[2, "n", 5]]
    assert [d.dim_value or d.dim_param for d in inferred.graph.output[0].type.tensor_type.shape.dim] == [2, "n", 5]
