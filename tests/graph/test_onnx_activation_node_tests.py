"""ONNX's own node tests for the activations `--activations` converts (onnx.backend.test: the op
cases and their `_expanded` function bodies, which write constants through CastLike and adds as
Sum): each converts to one SpikingActivation computing the numpy reference of the shipped set, and
stays within that set's error of ONNX's expected output. ONNX's HardSigmoid cases (alpha 0.2 or
0.5, beta 0.5 or 0.6) convert as torch's HardSigmoid of 6 alpha x + 6 beta - 3, and so do their
`_expanded` bodies, Max(Min(alpha x + beta, 1), 0)."""

import warnings

import numpy as np
import pytest

from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons.activation import GATE_OF, shipped_activation, spiking_activation
from tests.helpers import run

FUNCTION = {"test_gelu": "gelu", "test_sigmoid": "sigmoid", "test_tanh": "tanh", "test_hardswish": "hardswish"}
FUNCTION["test_swish"] = "silu"


def _cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.name: c for c in collect_testcases(None) if c.name.startswith((*FUNCTION, "test_hardsigmoid"))}


CASES = _cases()
CONVERTED = sorted(name for name in CASES if not name.startswith("test_hardsigmoid"))


def _function(name):
    return next(f for prefix, f in FUNCTION.items() if name.startswith(prefix))


def _swish_alpha(case) -> float:
    """The alpha of a Swish case (1 unless set), from the op or from its body's Constant."""
    import onnx

    for node in case.model.graph.node:
        if node.op_type in ("Swish", "Constant") and node.attribute:
            value = onnx.helper.get_attribute_value(node.attribute[0])
            return float(value if not hasattr(value, "dims") else onnx.numpy_helper.to_array(value))
    return 1.0


def test_every_activation_node_test_is_covered():
    assert {_function(n) for n in CONVERTED} == set(FUNCTION.values()) and len(CONVERTED) >= 14
    assert any(n.endswith("_expanded") for n in CONVERTED) and any(n.startswith("test_hardsigmoid") for n in CASES)


@pytest.mark.parametrize("form", ["direct", "gated"])
@pytest.mark.parametrize("name", CONVERTED)
def test_onnx_activation_node_test_converts_and_matches_reference(name, form):
    case = CASES[name]
    function = _function(name)
    options = RewriteOptions(activations=(function,), activation_form=form)
    new, report = rewrite_model(case.model, options)
    assert [a["function"] for a in report.activations] == [function], report.activation_misses
    assert [n.op_type for n in new.graph.node if n.domain == "ai.sit"] == ["SpikingActivation"]
    params = shipped_activation(options.set_function(function), 12)
    assert params.function == (GATE_OF.get(function, function) if form == "gated" else function)
    if function == "silu":
        alpha = _swish_alpha(case)
        params = params.rescaled(alpha) if alpha != 1.0 else params
    for inputs, (expected,) in case.data_sets:
        (x,) = inputs
        (y,) = run(new, {case.model.graph.input[0].name: x})
        np.testing.assert_array_equal(y, spiking_activation(x, params))
        assert np.abs(y - expected).max() <= params.neuron.max_error * 1.01 + 1e-6


HARDSIGMOIDS = sorted(n for n in CASES if n.startswith("test_hardsigmoid"))


@pytest.mark.parametrize("name", HARDSIGMOIDS)
def test_onnx_hardsigmoid_cases_convert_through_their_affine_input(name):
    """The op and its body, Max(Min(alpha x + beta, 1), 0) with constants through CastLike, alike:
    torch's HardSigmoid of 6 alpha x + 6 beta - 3, read by a Mul and an Add before the neuron."""
    import onnx

    case = CASES[name]
    node = CASES[name.replace("_expanded_ver18", "")].model.graph.node[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    new, report = rewrite_model(case.model, RewriteOptions(activations=("hardsigmoid",)))
    (entry,) = report.activations
    assert entry["input_map"] == pytest.approx([6 * alpha, 6 * beta - 3])
    if "expanded" in name:
        assert entry["form"] == f"Max(Min({alpha:.4g} x + {beta:.4g}, 1), 0)" and report.activation_misses == []
        assert [n.op_type for n in new.graph.node] == ["Mul", "Add", "SpikingActivation"]
    params = shipped_activation("hardsigmoid", 12)
    for inputs, (expected,) in case.data_sets:
        (x,) = inputs
        (y,) = run(new, {case.model.graph.input[0].name: x})
        read = x * np.float32(6 * alpha) + np.float32(6 * beta - 3)
        np.testing.assert_array_equal(y, spiking_activation(read.astype(np.float32), params))
        assert np.abs(y - expected).max() <= params.neuron.max_error * 1.01 + 1e-6


def test_onnx_hardsigmoid_bodies_are_no_hardswish():
    """Asked for HardSwish only, a HardSigmoid body is left, saying what it is."""
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.activations import find_activation_sites

    misses = []
    find_activation_sites(gs.import_onnx(CASES["test_hardsigmoid_expanded_ver18"].model), {"hardswish"}, misses)
    assert [m.reason for m in misses] == [
        "a Max(Min(0.5 x + 0.6, 1), 0) (hardsigmoid), and hardsigmoid was not asked for"
    ]
    with pytest.raises(SitOnnxError, match="nor hardswish activation to convert"):
        rewrite_model(CASES["test_hardsigmoid_expanded_ver18"].model, RewriteOptions(activations=("hardswish",)))
