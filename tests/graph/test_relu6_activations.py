"""HardSigmoid and HardSwish written through ReLU6, as Paddle, TensorFlow and older exporters write
them: `Clip(x + 3, 0, 6) / 6`, times x before or after the division. Each form becomes one
SpikingActivation whose output is the reference's; what only looks like one says why it is left."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons.activation import shipped_activation, spiking_activation
from tests.graph.test_activation_rewrite import ALL, _const, _misses, _model, _x
from tests.helpers import run

BOUNDS = [_const("zero", 0.0), _const("six", 6.0), _const("three", 3.0)]


def _clip(bounds=("zero", "six"), add=("x", "three"), out="c"):
    return [
        helper.make_node("Add", list(add), ["a"], name="add3"),
        helper.make_node("Clip", ["a", *bounds], [out], name="relu6"),
    ]


def _paddle():  # paddle2onnx's hardswish: (x * relu6(x + 3)) / 6
    return _clip() + [
        helper.make_node("Mul", ["x", "c"], ["m"], name="times_x"),
        helper.make_node("Div", ["m", "six"], ["y"], name="by6"),
    ]


def _divided_first():  # x * (relu6(x + 3) / 6), with 3 + x
    return _clip(add=("three", "x")) + [
        helper.make_node("Div", ["c", "six"], ["h"], name="by6"),
        helper.make_node("Mul", ["h", "x"], ["y"], name="times_x"),
    ]


def _times_a_sixth():  # (relu6(x + 3) * x) * (1/6)
    return _clip() + [
        helper.make_node("Mul", ["c", "x"], ["m"], name="times_x"),
        helper.make_node("Mul", ["m", "sixth"], ["y"], name="times_sixth"),
    ]


FORMS = {
    "paddle": (_paddle, "hardswish", "x * Clip(x + 3, 0, 6) / 6"),
    "divided first": (_divided_first, "hardswish", "x * Clip(x + 3, 0, 6) / 6"),
    "times a sixth": (_times_a_sixth, "hardswish", "x * Clip(x + 3, 0, 6) / 6"),
    "hardsigmoid": (
        lambda: _clip(out="c") + [helper.make_node("Div", ["c", "six"], ["y"], name="by6")],
        "hardsigmoid",
        "Clip(x + 3, 0, 6) / 6",
    ),
    "hardsigmoid times a sixth": (
        lambda: _clip() + [helper.make_node("Mul", ["sixth", "c"], ["y"], name="times_sixth")],
        "hardsigmoid",
        "Clip(x + 3, 0, 6) / 6",
    ),
}


@pytest.mark.parametrize("form", FORMS)
def test_each_relu6_form_becomes_one_spiking_activation(form):
    build, function, form_name = FORMS[form]
    model = _model(build(), BOUNDS + [_const("sixth", 1 / 6)])
    new, report = rewrite_model(model, RewriteOptions(activations=ALL))
    assert [(a["function"], a["form"], a["name"]) for a in report.activations] == [(function, form_name, "relu6")]
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation"] and report.activation_misses == []
    x = _x()
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, shipped_activation(function, 12)))


@pytest.mark.parametrize("opset", [6, 10])
def test_clip_bounds_as_attributes_below_opset_11(opset):
    """Converted through the opset upgrade, which makes the attributes inputs."""
    nodes = [
        helper.make_node("Add", ["x", "three"], ["a"], name="add3"),
        helper.make_node("Clip", ["a"], ["c"], name="relu6", min=0.0, max=6.0),
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["y"]),
    ]
    new, report = rewrite_model(_model(nodes, BOUNDS, opset=opset), RewriteOptions(activations=("hardswish",)))
    assert [a["function"] for a in report.activations] == ["hardswish"]
    x = _x(1)
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, shipped_activation("hardswish", 12)))


def test_only_hardsigmoid_asked_keeps_the_product_with_x():
    new, report = rewrite_model(_model(_divided_first(), BOUNDS), RewriteOptions(activations=("hardsigmoid",)))
    assert [(a["function"], a["output"]) for a in report.activations] == [("hardsigmoid", "h")]
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation", "Mul"]
    x = _x(2)
    expected = spiking_activation(x, shipped_activation("hardsigmoid", 12)) * x
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, rtol=1e-6, atol=1e-6)


def test_a_form_not_asked_for_says_which_it_is():
    _, misses = _misses(_model(_paddle(), BOUNDS), {"hardsigmoid"})
    assert misses == [("relu6", "a x * Clip(x + 3, 0, 6) / 6 (hardswish), and hardswish was not asked for")]
    sigmoid_only = _clip() + [helper.make_node("Div", ["c", "six"], ["y"], name="by6")]
    _, misses = _misses(_model(sigmoid_only, BOUNDS), {"hardswish"})
    assert misses == [("relu6", "a Clip(x + 3, 0, 6) / 6 (hardsigmoid), and hardsigmoid was not asked for")]


def test_a_plain_relu6_or_another_shift_is_no_start():
    relu6 = [helper.make_node("Clip", ["x", "zero", "six"], ["y"], name="relu6")]
    assert _misses(_model(relu6, BOUNDS), set(ALL)) == ([], [])
    shifted = _clip(add=("x", "two"), out="c") + [helper.make_node("Div", ["c", "six"], ["y"])]
    assert _misses(_model(shifted, BOUNDS + [_const("two", 2.0)]), set(ALL)) == ([], [])
    constant_x = _clip(add=("three", "three"), out="c") + [helper.make_node("Mul", ["c", "x"], ["y"])]
    assert _misses(_model(constant_x, BOUNDS), set(ALL)) == ([], [])
    subtracted = [
        helper.make_node("Sub", ["x", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["c"], name="relu6"),
        helper.make_node("Div", ["c", "six"], ["y"]),
    ]
    assert _misses(_model(subtracted, BOUNDS), set(ALL)) == ([], [])
    foreign_add = [helper.make_node("Add", ["x", "three"], ["a"], domain="custom")] + _clip()[1:]
    foreign_add.append(helper.make_node("Div", ["c", "six"], ["y"]))
    model = _model(foreign_add, BOUNDS)
    model.opset_import.append(helper.make_opsetid("custom", 1))
    assert _misses(model, set(ALL)) == ([], [])


NEAR_MISSES = {
    "divided by 5": (
        _clip() + [helper.make_node("Div", ["c", "five"], ["y"], name="by5")],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "('y' feeds a graph output, not one Mul or Div)",
    ),
    "no lower bound": (
        _clip(bounds=("", "six")) + [helper.make_node("Div", ["c", "six"], ["y"], name="by6")],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "('y' feeds a graph output, not one Mul or Div)",
    ),
    "no upper bound": (
        _clip(bounds=("zero",)) + [helper.make_node("Div", ["c", "six"], ["y"], name="by6")],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "('y' feeds a graph output, not one Mul or Div)",
    ),
    "read by nothing": (
        _clip() + [helper.make_node("Identity", ["x"], ["y"])],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "('c' feeds nothing, not one Mul or Div)",
    ),
    "read elsewhere": (
        _clip() + [helper.make_node("Div", ["c", "six"], ["y"], name="by6"), helper.make_node("Relu", ["c"], ["r"])],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "('c' feeds Div, Relu, not one Mul or Div)",
    ),
    "times another tensor": (
        _clip() + [helper.make_node("Mul", ["c", "z"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "(it also depends on 'z', not only on 'x')",
    ),
    "an omitted input": (
        _clip() + [helper.make_node("Mul", ["c", ""], ["m"], name="m"), helper.make_node("Div", ["m", "six"], ["y"])],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "(Mul 'm' in the chain lacks an input)",
    ),
    "of another domain": (
        _clip() + [helper.make_node("Div", ["c", "six"], ["y"], name="by6", domain="custom")],
        "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x' "
        "(Div 'by6' is no two-input op of the default domain)",
    ),
}


@pytest.mark.parametrize("case", NEAR_MISSES)
def test_near_misses_are_left_alone_saying_why(case):
    nodes, reason = NEAR_MISSES[case]
    graph_inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 50])] if "another tensor" in case else []
    model = _model(nodes, BOUNDS + [_const("five", 5.0)], extra_outputs=("r",) if "elsewhere" in case else ())
    model.graph.input.extend(graph_inputs)
    if "domain" in case:
        model.opset_import.append(helper.make_opsetid("custom", 1))
    sites, misses = _misses(model, set(ALL))
    assert sites == [] and misses == [("relu6", reason)]


def test_float16_paddle_form_at_an_old_opset_goes_through_casts():
    consts = [_const(n, v, np.float16) for n, v in (("zero", 0.0), ("six", 6.0), ("three", 3.0))]
    model = _model(_paddle(), consts, opset=13, dtype=TensorProto.FLOAT16)
    new, report = rewrite_model(model, RewriteOptions(activations=("hardswish",)))
    assert report.activations[0]["form"] == "x * Clip(x + 3, 0, 6) / 6"
    assert [n.op_type for n in new.graph.node] == ["Cast", "SpikingActivation", "Cast"]
    x = _x(3).astype(np.float16)
    got = run(new, {"x": x})[0]
    expected = spiking_activation(x.astype(np.float32), shipped_activation("hardswish", 12)).astype(np.float16)
    assert got.dtype == np.float16 and np.array_equal(got, expected)


@pytest.mark.parametrize("other", ["z", ""])
def test_a_gate_times_another_tensor_keeps_its_hardsigmoid(other):
    """MobileNetV3's squeeze-excitation: hardsigmoid(x) scales another tensor (or, malformed, an
    omitted one); the walk stops at that product and the gate is converted alone."""
    nodes = _clip() + [
        helper.make_node("Div", ["c", "six"], ["gate"], name="by6"),
        helper.make_node("Mul", ["gate", other], ["y"], name="scale"),
    ]
    model = _model(nodes, BOUNDS)
    model.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 50]))
    sites, misses = _misses(model, set(ALL))
    assert [(s.function, s.output.name) for s in sites] == [("hardsigmoid", "gate")] and misses == []
    if other:
        new, _ = rewrite_model(model, RewriteOptions(activations=("hardsigmoid",)))
        x, z = _x(4), _x(5)
        expected = spiking_activation(x, shipped_activation("hardsigmoid", 12)) * z
        np.testing.assert_allclose(run(new, {"x": x, "z": z})[0], expected, rtol=1e-6, atol=1e-6)


def _two_op_clamp(first, second, add=("x", "three")):
    """ReLU6(x + 3) as two ops: Min(Max(a, 0), 6), Max(Min(a, 6), 0) or Min(Relu(a), 6)."""
    bound = {"Max": "zero", "Min": "six"}
    first_inputs = ["a"] if first == "Relu" else ["a", bound[first]]
    return [
        helper.make_node("Add", list(add), ["a"], name="add3"),
        helper.make_node(first, first_inputs, ["inner"], name="clamp_low" if first != "Min" else "clamp_high"),
        helper.make_node(second, ["inner", bound[second]][:: -1 if first == "Relu" else 1], ["c"], name="clamp2"),
    ]


CLAMP_FORMS = {("Max", "Min"): "Min(Max(x + 3, 0), 6)", ("Min", "Max"): "Max(Min(x + 3, 6), 0)",
               ("Relu", "Min"): "Min(Relu(x + 3), 6)"}  # fmt: skip


@pytest.mark.parametrize("ops", CLAMP_FORMS)
@pytest.mark.parametrize("function", ["hardswish", "hardsigmoid"])
def test_relu6_as_min_and_max_is_a_start_too(ops, function):
    """jnp.minimum(jnp.maximum(x + 3, 0), 6) and hand-written ReLU6s: the same sites as Clip's."""
    tail = [helper.make_node("Div", ["c", "six"], ["h" if function == "hardswish" else "y"], name="by6")]
    if function == "hardswish":
        tail.append(helper.make_node("Mul", ["x", "h"], ["y"], name="times_x"))
    new, report = rewrite_model(_model(_two_op_clamp(*ops) + tail, BOUNDS), RewriteOptions(activations=ALL))
    form = CLAMP_FORMS[ops] + " / 6"
    expected_form = f"x * {form}" if function == "hardswish" else form
    start = "clamp_low" if ops[0] != "Min" else "clamp_high"
    assert [(a["function"], a["form"], a["name"]) for a in report.activations] == [(function, expected_form, start)]
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation"] and report.activation_misses == []
    x = _x(4)
    np.testing.assert_array_equal(run(new, {"x": x})[0], spiking_activation(x, shipped_activation(function, 12)))


def test_two_op_clamps_that_are_no_relu6_of_x_plus_3_are_left_silently_or_say_why():
    by5 = _two_op_clamp("Max", "Min") + [helper.make_node("Div", ["c", "five"], ["y"])]
    sites, misses = _misses(_model(by5, BOUNDS + [_const("five", 5.0)]), set(ALL))
    assert sites == [] and misses == [
        ("clamp_low", "Min(Max(x + 3, 0), 6) and the Muls and Divs after it compute no HardSigmoid or HardSwish "
                      "of 'x' ('y' feeds a graph output, not one Mul or Div)")]  # fmt: skip
    quiet = {
        "a Max read by a Relu": _two_op_clamp("Max", "Min")[:2] + [helper.make_node("Relu", ["inner"], ["y"])],
        "two Maxes": [*_two_op_clamp("Max", "Max")[:2], helper.make_node("Max", ["inner", "zero"], ["y"])],
        "x minus 3": _two_op_clamp("Max", "Min", add=("x", "minus3")) + [helper.make_node("Div", ["c", "six"], ["y"])],
        "a three-input Max": [helper.make_node("Add", ["x", "three"], ["a"]),
                              helper.make_node("Max", ["a", "zero", "x"], ["m"]),
                              helper.make_node("Min", ["m", "six"], ["c"]),
                              helper.make_node("Div", ["c", "six"], ["y"])],
        "a Max of two tensors": [helper.make_node("Add", ["x", "three"], ["a"]),
                                 helper.make_node("Max", ["a", "x"], ["m"]),
                                 helper.make_node("Min", ["m", "six"], ["c"]),
                                 helper.make_node("Div", ["c", "six"], ["y"])],
    }  # fmt: skip
    for case, nodes in quiet.items():
        assert _misses(_model(nodes, BOUNDS + [_const("minus3", -3.0)]), set(ALL)) == ([], []), case


def test_a_max_of_x_plus_3_that_is_a_graph_output_is_no_start():
    nodes = _two_op_clamp("Max", "Min") + [helper.make_node("Div", ["c", "six"], ["y"])]
    model = _model(nodes, BOUNDS, extra_outputs=("inner",))
    assert _misses(model, set(ALL)) == ([], [])


UNIT = [_const("one", 1.0), _const("zero", 0.0), _const("alpha", 0.2), _const("beta", 0.5), _const("sixth", 1 / 6)]


def _unit_clamp(alpha="alpha", beta="beta", clamp=("Clip",), out="y", times_x=False):
    """HardSigmoid(alpha, beta)'s body: clamp(alpha x + beta) to [0, 1] as Clip or two ops (Keras 2's
    hard_sigmoid, 0.2 x + 0.5, through tf2onnx; ONNX's own body Max(Min(., 1), 0)); times x after it."""
    u = [helper.make_node("Mul", ["x", alpha], ["ax"], name="scale"), helper.make_node("Add", ["ax", beta], ["u"])]
    end = "g" if times_x else out
    if clamp == ("Clip",):
        nodes = [helper.make_node("Clip", ["u", "zero", "one"], [end], name="clamp")]
    else:
        first, second = clamp
        bound = {"Max": "zero", "Min": "one"}
        nodes = [helper.make_node(first, ["u", bound[first]], ["inner"], name="clamp"),
                 helper.make_node(second, ["inner", bound[second]], [end])]  # fmt: skip
    tail = [helper.make_node("Mul", ["x", "g"], [out], name="times_x")] if times_x else []
    return u + nodes + tail


@pytest.mark.parametrize(
    "clamp, form",
    [(("Clip",), "Clip(0.2 x + 0.5, 0, 1)"), (("Min", "Max"), "Max(Min(0.2 x + 0.5, 1), 0)"),
     (("Max", "Min"), "Min(Max(0.2 x + 0.5, 0), 1)")],
)  # fmt: skip
def test_a_clamp_of_alpha_x_plus_beta_to_0_1_is_a_hardsigmoid(clamp, form):
    """Clip(0.2 x + 0.5, 0, 1) is torch's HardSigmoid of 1.2 x: the neuron reads 1.2 x (a Mul and
    an Add before it, in place of the model's own); its output is the reference's of that input."""
    new, report = rewrite_model(_model(_unit_clamp(clamp=clamp), UNIT), RewriteOptions(activations=("hardsigmoid",)))
    (entry,) = report.activations
    assert (entry["function"], entry["form"], entry["name"]) == ("hardsigmoid", form, "clamp")
    assert entry["input_map"] == pytest.approx([1.2, 0.0], abs=1e-6) and report.activation_misses == []
    assert [n.op_type for n in new.graph.node] == ["Mul", "Add", "SpikingActivation"]
    x = _x(6)
    read = (x * np.float32(1.2) + np.float32(0.0)).astype(np.float32)
    expected = spiking_activation(read, shipped_activation("hardsigmoid", 12))
    np.testing.assert_array_equal(run(new, {"x": x})[0], expected)
    exact = np.clip(0.2 * x + 0.5, 0, 1)
    assert np.abs(run(new, {"x": x})[0] - exact).max() <= shipped_activation("hardsigmoid", 12).neuron.max_error * 1.01


@pytest.mark.parametrize("alpha, scale", [("sixth", None), ("alpha", 1.2)])
def test_x_times_the_body_with_beta_half_is_hardswish(alpha, scale):
    """ONNX's HardSwish body inlined, x * Max(Min(x / 6 + 0.5, 1), 0): HardSwish itself; with
    alpha 0.2 HardSwish rescaled (HardSwish(1.2 x) / 1.2)."""
    model = _model(_unit_clamp(alpha=alpha, clamp=("Min", "Max"), times_x=True), UNIT)
    new, report = rewrite_model(model, RewriteOptions(activations=("hardswish",)))
    (entry,) = report.activations
    spelled = "0.1667" if alpha == "sixth" else "0.2"
    assert (entry["function"], entry["form"]) == ("hardswish", f"x * Max(Min({spelled} x + 0.5, 1), 0)")
    assert [n.op_type for n in new.graph.node] == ["SpikingActivation"]
    params = shipped_activation("hardswish", 12)
    x = _x(7)
    assert report.activations[0]["input_scale"] == (pytest.approx(scale) if scale else 1.0)  # 6 * 1/6 in float32: 1
    expected = spiking_activation(x, params.rescaled(scale) if scale else params)
    np.testing.assert_allclose(run(new, {"x": x})[0], expected, atol=1e-6, rtol=0 if scale else 1e-7)


def test_x_times_a_shifted_body_converts_only_its_gate():
    """beta 0.6: x * HardSigmoid is no HardSwish; the gate converts where hardsigmoid is asked."""
    model = _model(_unit_clamp(beta="beta6", times_x=True), UNIT + [_const("beta6", 0.6)])
    sites, misses = _misses(model, {"hardswish"})
    assert sites == [] and misses == [
        ("clamp", "a Clip(0.2 x + 0.6, 0, 1) (hardsigmoid), and hardsigmoid was not asked for")
    ]
    new, report = rewrite_model(model, RewriteOptions(activations=("hardsigmoid", "hardswish")))
    assert [(a["function"], a["form"]) for a in report.activations] == [("hardsigmoid", "Clip(0.2 x + 0.6, 0, 1)")]
    assert report.activations[0]["input_map"] == pytest.approx([1.2, 0.6])
    assert [n.op_type for n in new.graph.node] == ["Mul", "Add", "SpikingActivation", "Mul"]


def test_clamps_that_are_no_hardsigmoid_body_are_left_silently():
    """A decreasing a x + b, a clamp to [0, 2] or [-1, 1], a vector offset, an Add without a
    constant, x + 0.5 clamped (a = 1: converted, HardSigmoid of 6 x), a Mul read elsewhere."""
    extra = [_const("minus", -0.2), _const("two", 2.0), _const("minus_one", -1.0), _const("vector", np.full(50, 0.5))]
    cases = {
        "decreasing": _unit_clamp(alpha="minus"),
        "to 2": [*_unit_clamp()[:2], helper.make_node("Clip", ["u", "zero", "two"], ["y"])],
        "from -1": [*_unit_clamp()[:2], helper.make_node("Clip", ["u", "minus_one", "one"], ["y"])],
        "vector offset": _unit_clamp(beta="vector"),
        "a three-input Min": [*_unit_clamp()[:2], helper.make_node("Min", ["u", "one", "x"], ["m"]),
                              helper.make_node("Max", ["m", "zero"], ["y"])],
        "a Max read by nothing": [*_unit_clamp()[:2], helper.make_node("Max", ["u", "zero"], ["dead"]),
                                  helper.make_node("Clip", ["x", "zero", "beta"], ["y"])],
        "two tensors": [helper.make_node("Add", ["x", "x"], ["u"]),
                        helper.make_node("Clip", ["u", "zero", "one"], ["y"])],
    }  # fmt: skip
    for case, nodes in cases.items():
        assert _misses(_model(nodes, UNIT + extra), set(ALL)) == ([], []), case
    plain = [helper.make_node("Add", ["x", "beta"], ["u"]), helper.make_node("Clip", ["u", "zero", "one"], ["y"])]
    sites, _ = _misses(_model(plain, UNIT), set(ALL))
    assert [(s.function, s.form, s.affine) for s in sites] == [("hardsigmoid", "Clip(1 x + 0.5, 0, 1)", (6.0, 0.0))]
    shared = _unit_clamp() + [helper.make_node("Relu", ["ax"], ["r"])]
    assert _misses(_model(shared, UNIT, extra_outputs=("r",)), set(ALL)) == ([], [])


def test_a_gate_flat_on_the_usual_check_range_is_still_told_from_its_product():
    """x * Clip(x / 6 - 1, 0, 1): on x in [-6, 6] both the gate and the product are 0, so checking
    there would take the product for the gate (measured: off by 5.9). The check points follow the
    gate's own input (6..18 here): the gate converts, the product with x stays."""
    nodes = _unit_clamp(alpha="sixth", beta="minus_one", times_x=True)
    model = _model(nodes, UNIT + [_const("minus_one", -1.0)])
    new, report = rewrite_model(model, RewriteOptions(activations=("hardsigmoid", "hardswish")))
    assert [(a["function"], a["output"], a["form"]) for a in report.activations] == [
        ("hardsigmoid", "g", "Clip(0.1667 x - 1, 0, 1)")
    ]
    assert [n.op_type for n in new.graph.node] == ["Mul", "Add", "SpikingActivation", "Mul"]
    x = np.linspace(-12, 24, 100, dtype=np.float32).reshape(2, 50)
    error = np.abs(run(new, {"x": x})[0] - x * np.clip(x / 6 - 1, 0, 1)).max()
    assert error <= np.abs(x).max() * shipped_activation("hardsigmoid", 12).neuron.max_error * 1.01


def test_x_plus_3_clamped_to_0_1_is_read_by_its_bounds():
    """Clip(x + 3, 0, 1) is no ReLU6 but HardSigmoid(1, 3)'s body: torch's of 6 x + 15."""
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "one"], ["y"])]
    sites, misses = _misses(_model(nodes, BOUNDS + [_const("one", 1.0)]), set(ALL))
    assert [(s.form, s.affine) for s in sites] == [("Clip(1 x + 3, 0, 1)", (6.0, 15.0))] and misses == []


@pytest.mark.parametrize(
    "alpha, beta, high, form, affine",
    [(1 / 6, 0.5, 1.0, "Clip(0.1667 x + 0.5, 0, 1)", None),  # torch's own: no Mul and Add before the neuron
     (1 / 6, 0.6, 1.0, "Clip(0.1667 x + 0.6, 0, 1)", (1.0, 0.6)),
     (0.001, 0.5, 1.0, "Clip(0.001 x + 0.5, 0, 1)", (0.006, 0.0)),  # its bounds only far out: probed there
     (1.0, 2e4, 1.0, "Clip(1 x + 2e+04, 0, 1)", (6.0, 119997.0)),
     (1.0, -2e4, 1.0, "Clip(1 x - 2e+04, 0, 1)", (6.0, -120003.0)),
     (0.2, 0.5, 1.0005, "Clip(0.2 x + 0.5, 0, 1)", (1.2, 0.0))],  # a bound within 1e-3 of 1
)  # fmt: skip
def test_the_body_is_read_for_any_alpha_and_beta(alpha, beta, high, form, affine):
    consts = [_const("one", high), _const("zero", 0.0), _const("alpha", alpha), _const("beta", beta)]
    sites, misses = _misses(_model(_unit_clamp(), consts), set(ALL))
    assert misses == [] and [(s.function, s.form) for s in sites] == [("hardsigmoid", form)]
    assert sites[0].affine == (pytest.approx(affine, rel=1e-6) if affine else None)


def test_a_hardswish_body_rescaled_out_of_float32_says_so():
    model = _model(_unit_clamp(alpha="twenty", times_x=True), UNIT + [_const("twenty", 20.0)])
    sites, misses = _misses(model, {"hardswish"})
    assert sites == [] and misses == [
        ("clamp", "x * Clip(20 x + 0.5, 0, 1): 6 * alpha outside [0.01, 100], where a rescaled set stays in float32")
    ]


def test_the_walk_after_a_relu6_stops_after_two_steps():
    """x * Clip(x + 3, 0, 6) / 3 / 2 is HardSwish in three steps: past the two a ReLU6 form takes."""
    nodes = _clip() + [
        helper.make_node("Mul", ["c", "x"], ["m"]),
        helper.make_node("Div", ["m", "three"], ["t"]),
        helper.make_node("Div", ["t", "two"], ["y"]),
    ]
    sites, misses = _misses(_model(nodes, BOUNDS + [_const("two", 2.0)]), set(ALL))
    assert sites == [] and misses == [
        ("relu6", "Clip(x + 3) and the Muls and Divs after it compute no HardSigmoid or HardSwish of 'x'")
    ]
