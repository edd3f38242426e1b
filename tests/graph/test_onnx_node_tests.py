"""ONNX's own node tests for Softmax (onnx.backend.test: the plain cases, `_expanded` and
`_expanded_ver18`, whose function bodies take their axes from Constant nodes): every case converts
and matches the numpy Spiking-Softmax reference."""

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.helpers import run


def _softmax_cases():
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.name: c for c in collect_testcases(None) if c.name.startswith("test_softmax")}


CASES = _softmax_cases()


def _axis(case) -> int:
    node = next(n for n in case.model.graph.node if n.op_type in ("Softmax", "ReduceSum"))
    if node.op_type == "Softmax":
        return next((a.i for a in node.attribute if a.name == "axis"), -1)
    constant = next(n for n in case.model.graph.node if n.op_type == "Constant" and n.output[0] == node.input[1])
    value = onnx.helper.get_attribute_value(constant.attribute[0])
    return int(np.asarray(onnx.numpy_helper.to_array(value) if hasattr(value, "dims") else value).reshape(-1)[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_softmax_node_test_converts_and_matches_reference(name):
    case = CASES[name]
    new, report = rewrite_model(case.model, RewriteOptions())
    assert len(report.converted) == 1 and "Softmax" not in report.ops_after and "Exp" not in report.ops_after
    inputs, _ = case.data_sets[0]
    x = inputs[0]
    got = run(new, {case.model.graph.input[0].name: x})[0]
    expected = spiking_softmax(x, shipped_params(12, SHIFT_RANGE), axis=_axis(case), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("steps", [8, 12])
def test_default_sets_beat_the_exp_fits_against_true_softmax(steps):
    """Issue 10's yardstick: the largest error against the true softmax over every node test. The
    softmax-fitted default sets (measured 0.025 at K=8, 0.015 at K=12) beat the exp-RMSE ones
    (0.052, 0.030); the goals (0.02, 0.01) are not reached by one neuron per element."""
    from sit_onnx.neurons import softmax

    def worst(objective):
        params = shipped_params(steps, SHIFT_RANGE, objective)
        errors = []
        for case in CASES.values():
            x, axis = case.data_sets[0][0][0], _axis(case)
            q = spiking_softmax(x, params, axis=axis, options=SoftmaxOptions(shift=True))
            errors.append(np.abs(q - softmax(x, axis)).max())
        return max(errors)

    default, paper = worst(None), worst("exp-rmse")
    assert default < 0.75 * paper and default < {8: 0.026, 12: 0.016}[steps]
