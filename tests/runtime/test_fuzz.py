"""Seeded fuzzing: the kernels, the function fallback (plain onnxruntime running the ops' function
bodies) and the numpy reference on random shapes, axes, dtypes, neurons and special values, for
every op, SpikingSoftmax in both modes. SI-exp and SpikingActivation must agree bit for bit everywhere; SI-norm within
the rounding of its row sum (the three sum in different orders), and with N spikes by at most one
spike."""

import random
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sit_onnx.domain import DOMAIN
from sit_onnx.graph.functions import spiking_functions
from sit_onnx.graph.rewrite_softmax import neuron_attributes
from sit_onnx.neurons import NeuronParams, SoftmaxOptions, si_exp, si_norm, spiking_softmax
from sit_onnx.runtime.library import get_library_path

CASES = 300
TYPES = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}
SPECIALS = np.array([np.nan, np.inf, -np.inf, -3.4e38, 0.0, -0.0, 1e-30, 60000.0], np.float32)


def _case(rng):
    """One random op, input and neuron."""
    dtype = [np.float32, np.float16][rng.integers(2)]
    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.choice([0, 1, 2, 3, 5, 8, 17, 33])) if rng.random() < 0.9 else 0 for _ in range(rank))
    shape = tuple(max(d, 1) if rng.random() < 0.8 else d for d in shape)
    axis = int(rng.integers(-rank, rank))
    steps = int(rng.integers(1, 17))
    params = NeuronParams(
        np.sort(rng.uniform(-10, 2, steps))[::-1], rng.uniform(0.05, 4, steps), rng.uniform(0, 2, steps), (-10, 2)
    )
    x = rng.normal(0, 3, shape).astype(np.float32)
    if x.size:
        flat = x.reshape(-1)
        picks = rng.random(flat.size) < 0.05
        flat[picks] = rng.choice(np.concatenate([SPECIALS, params.thresholds]), int(picks.sum()))
    op = ["SpikingExp", "SpikingNorm", "shift", "no-shift", "sigmoid", "SpikingActivation"][rng.integers(6)]
    time_steps = 0 if rng.random() < 0.5 else int(rng.integers(1, 257))
    if op == "SpikingNorm":
        x = np.abs(x)  # SI-norm's input is SI-exp's output: non-negative
    with np.errstate(over="ignore"):  # the specials (3.4e38) become float16's inf: a case of its own
        return op, x.astype(dtype), axis, params, time_steps


def _activation(params, axis):
    """An activation set from the case's neuron: range [-10, 2] narrowed by the axis, sloped or flat
    tails and a gate (x times the neuron) picked by it too (the fuzz varies them without another
    random draw)."""
    from sit_onnx.neurons.activation import ActivationParams

    tails = (0.0, -1.0, 0.0, 1.0) if axis % 2 else (0.5, 0.25, 1.5, -0.75)
    function = "silu_gate" if axis in (-1, 2) else "tanh"
    return ActivationParams(function, replace(params, input_range=(-10.0 + abs(axis), 2.0)), 0.125 * axis, tails)


def _node(op, axis, params, time_steps):
    if op == "SpikingActivation":
        from sit_onnx.graph.activations import activation_attributes

        attrs = activation_attributes(_activation(params, axis))
        return helper.make_node("SpikingActivation", ["x"], ["y"], domain=DOMAIN, **attrs)
    if op == "SpikingExp":
        return helper.make_node("SpikingExp", ["x"], ["y"], domain=DOMAIN, **neuron_attributes(params))
    if op == "SpikingNorm":
        return helper.make_node("SpikingNorm", ["x"], ["y"], domain=DOMAIN, axis=axis, time_steps=time_steps)
    flags = {"shift": int(op != "no-shift"), "sigmoid": int(op == "sigmoid")}
    attrs = {**neuron_attributes(params), "axis": axis, "time_steps": time_steps, **flags}
    return helper.make_node("SpikingSoftmax", ["x"], ["y"], domain=DOMAIN, **attrs)


def _model(node, elem, steps, activation_steps=None):
    """One ai.sit node from x to y, with the function bodies a session without the library runs."""
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", elem, None)], [helper.make_tensor_value_info("y", elem, None)]
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    functions = spiking_functions(steps, 17, activation_steps=activation_steps or steps)
    return helper.make_model(graph, opset_imports=opsets, functions=functions)


def _session(model, library):
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if library:
        options.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(node, x, steps, library):
    return _session(_model(node, TYPES[x.dtype.type], steps), library).run(None, {"x": x})[0]


def _reference(op, x, axis, params, time_steps):
    if op == "SpikingActivation":
        from sit_onnx.neurons.activation import spiking_activation

        return spiking_activation(x, _activation(params, axis))
    if op == "SpikingExp":
        return si_exp(x, params)
    if op == "SpikingNorm":
        return si_norm(x, axis=axis, time_steps=time_steps)
    options = SoftmaxOptions(sigmoid=op == "sigmoid", shift=op != "no-shift", time_steps=time_steps)
    return spiking_softmax(x, params, axis=axis, options=options)


def _assert_agree(got, expected, op, time_steps, label):
    half = got.dtype == np.float16
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    assert got.shape == expected.shape, label
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{label}: NaN in other places"
    if op in ("SpikingExp", "SpikingActivation"):
        np.testing.assert_array_equal(got, expected, err_msg=label)
        return
    finite = ~np.isnan(expected)
    error = np.abs(got - expected)[finite]
    allowed = 2e-6 * np.abs(expected[finite]) + 1e-7 + (1.0 / time_steps if time_steps else 0.0)
    if half:  # both round the float32 result to float16; a float32 difference may cross a rounding edge
        allowed = allowed + 1e-3 * np.abs(expected[finite])
    assert np.all(error <= allowed), f"{label}: max error {error.max() if error.size else 0:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_kernels_fallback_and_reference_agree(seed):
    rng = np.random.default_rng(1000 + seed)
    for case in range(CASES // 3):
        op, x, axis, params, time_steps = _case(rng)
        label = f"seed {seed} case {case}: {op} {x.dtype} {x.shape} axis {axis} K={params.steps} N={time_steps}"
        node = _node(op, axis, params, time_steps)
        expected = _reference(op, x, axis, params, time_steps)
        kernels = _run(node, x, params.steps, library=True)
        fallback = _run(node, x, params.steps, library=False)
        _assert_agree(kernels, expected, op, time_steps, label + " [kernels]")
        _assert_agree(fallback, expected, op, time_steps, label + " [fallback]")
        if op in ("SpikingExp", "SpikingActivation"):
            np.testing.assert_array_equal(kernels, fallback, err_msg=label)


@pytest.mark.parametrize("library", [True, False], ids=["kernels", "function bodies"])
@pytest.mark.parametrize("op", ["SpikingNorm", "SpikingSoftmax", "SpikingActivation"])
def test_absent_int_attributes_take_the_contracts_defaults_on_both_paths(op, library):
    """The op contract's defaults where a node omits its int attributes (another tool's node, or one
    written by hand): axis -1, time_steps 0, shift 1, sigmoid 0; SpikingActivation's bias 0.0 and
    gate 0. The kernels and the function bodies (their attribute defaults) must both apply them.
    Rows of 3 x 5 x 4: the last axis is neither the first nor the second, nor of their lengths."""
    rng = np.random.default_rng(7)
    params = NeuronParams(np.array([1.0, -0.5, -2.0, -4.0]), np.array([1.5, 1.0, 2.0, 1.0]),
                          np.array([1.5, 0.75, 0.25, 0.0625]), (-10.0, 2.0))  # fmt: skip
    x = rng.normal(0, 2, (3, 5, 4)).astype(np.float32)
    if op == "SpikingNorm":
        x = np.abs(x)
        node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN)
        expected = si_norm(x, axis=-1, time_steps=0)
    elif op == "SpikingSoftmax":
        node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN, **neuron_attributes(params))
        expected = spiking_softmax(x, params, axis=-1, options=SoftmaxOptions(shift=True))
    else:
        from sit_onnx.graph.activations import activation_attributes
        from sit_onnx.neurons.activation import ActivationParams, spiking_activation

        activation = ActivationParams("tanh", params, 0.0, (0.0, -1.0, 0.0, 1.0))
        attrs = {k: v for k, v in activation_attributes(activation).items() if k not in ("bias", "gate")}
        node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN, **attrs)
        expected = spiking_activation(x, activation)
    got = _run(node, x, params.steps, library=library)
    _assert_agree(got, expected, op, 0, f"{op} without its int attributes")


# A small valid set (K=3) for the tests of attributes around it
SMALL = NeuronParams(np.array([0.5, -0.5, -2.0]), np.array([1.0, 1.0, 2.0]), np.array([1.5, 0.5, 0.1]), (-4, 1))


@pytest.mark.parametrize("library", [True, False], ids=["kernels", "function bodies"])
@pytest.mark.parametrize("flag, value", [("shift", 2), ("shift", -1), ("sigmoid", 2), ("sigmoid", -3)])
def test_shift_and_sigmoid_other_than_0_or_1_are_refused_on_both_paths(flag, value, library):
    """The kernels refuse them at session creation; the function body, which has no assert, fails
    its check's Expand (it read any value but 0 as 1)."""
    params = SMALL
    attrs = {**neuron_attributes(params), flag: value}
    node = helper.make_node("SpikingSoftmax", ["x"], ["y"], domain=DOMAIN, **attrs)
    with pytest.raises(Exception, match="shift and sigmoid must be 0 or 1" if library else "(?i)expand"):
        _run(node, np.zeros((2, 3), np.float32), params.steps, library=library)


@pytest.mark.parametrize("shift, sigmoid", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_function_body_reads_shift_and_sigmoid_as_the_kernels_do(shift, sigmoid):
    params = SMALL
    x = np.random.default_rng(shift * 2 + sigmoid).normal(0, 2, (4, 6)).astype(np.float32)
    attrs = {**neuron_attributes(params), "shift": shift, "sigmoid": sigmoid}
    node = helper.make_node("SpikingSoftmax", ["x"], ["y"], domain=DOMAIN, **attrs)
    expected = spiking_softmax(x, params, axis=-1, options=SoftmaxOptions(shift=bool(shift), sigmoid=bool(sigmoid)))
    for library in (True, False):
        _assert_agree(_run(node, x, params.steps, library=library), expected, "SpikingSoftmax", 0, str(library))


@pytest.mark.parametrize("library", [True, False], ids=["kernels", "function bodies"])
@pytest.mark.parametrize("op", ["SpikingNorm", "SpikingSoftmax"])
def test_negative_time_steps_are_refused_on_both_paths(op, library):
    """time_steps < 0: the kernels refuse it at session creation; the function body had run it
    (a rate of floor(N·w/V_th)/N with N < 0 silently fell back to the amplified form)."""
    params = SMALL
    attrs = {} if op == "SpikingNorm" else neuron_attributes(params)
    node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN, time_steps=-2, **attrs)
    with pytest.raises(Exception, match="time_steps must be >= 0" if library else "(?i)expand"):
        _run(node, np.ones((2, 3), np.float32), params.steps, library=library)


PARITY_CASES = 600
PARITY_VALUES = [0, 1, 2, -1, -3, 5, 64, 0.0, 0.5, float("nan"), float("inf"), -1e38, [1.0], [0.0, 0.0, 0.0],
                 [1.0, 2.0, 3.0, 4.0], [1, 2, 3], "x"]  # fmt: skip


def _parity_bases():
    from sit_onnx.graph.activations import activation_attributes
    from sit_onnx.neurons.activation import ActivationParams

    params = SMALL
    neuron = neuron_attributes(params)
    return {
        "SpikingExp": neuron,
        "SpikingNorm": {"axis": -1, "time_steps": 0},
        "SpikingSoftmax": {**neuron, "axis": -1, "time_steps": 0, "shift": 1, "sigmoid": 0},
        "SpikingActivation": activation_attributes(ActivationParams("tanh", params, 0.0, (0.0, -1.0, 0.0, 1.0))),
    }


def changed_attributes(bases: dict, rng: random.Random) -> tuple[str, dict]:
    """A random op's base attributes with one or two of them set to another value or dropped."""
    op = rng.choice(sorted(bases))
    attrs = dict(bases[op])
    for _ in range(rng.randint(1, 2)):
        key = rng.choice([*attrs, "axis", "time_steps", "gate", "bias"])
        if rng.random() < 0.15:
            attrs.pop(key, None)
        else:
            attrs[key] = rng.choice(PARITY_VALUES)
    return op, attrs


def test_kernels_and_function_bodies_refuse_and_accept_the_same_attributes():
    """Seeded: a node with one or two attributes changed (to a value of another range or type, or
    dropped) is refused by the kernels exactly where its function body refuses it, and where both
    run they agree. A model the library refuses must not run without it, nor the other way round
    (with the bodies before this stop: shift, sigmoid, time_steps < 0 and SpikingActivation's ranges, 24 of 600)."""
    bases, rng, disagreements = _parity_bases(), random.Random(0), []
    for case in range(PARITY_CASES):
        op, attrs = changed_attributes(bases, rng)
        node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN, **attrs)
        x = np.random.default_rng(case).normal(0, 2, (2, 3, 4)).astype(np.float32)
        x = np.abs(x) if op == "SpikingNorm" else x
        results = []
        for library in (True, False):
            try:
                results.append(_run(node, x, 3, library=library))
            except Exception as error:  # noqa: BLE001 - a refusal, whatever onnxruntime raises
                results.append(error)
        refused = [isinstance(r, Exception) for r in results]
        if refused[0] != refused[1]:
            disagreements.append((case, op, "refused by the " + ("kernel" if refused[0] else "function body")))
        elif not refused[0]:
            steps = attrs.get("time_steps", 0)  # N spikes: the two may differ by one, as in the fuzz above
            steps = steps if isinstance(steps, int) and steps > 0 else 0
            _assert_agree(results[0], results[1], op if op != "SpikingSoftmax" else "softmax", steps, f"case {case}")
    assert disagreements == []


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("SpikingSoftmax", {"shift": 2}),
        ("SpikingSoftmax", {"sigmoid": -1}),
        ("SpikingNorm", {"time_steps": -2}),
        ("SpikingActivation", {"gate": 3}),
    ],
)
def test_function_bodies_refuse_bad_flags_at_session_creation(op, attrs):
    """As the kernels do: onnxruntime folds the attribute's check (two values expanded to [2 + excess],
    which its shape inference refuses unless excess is 0) when it builds the session; an earlier
    check's Squeeze had named no axis and the bad value surfaced on the first run."""
    from sit_onnx.graph.activations import activation_attributes
    from sit_onnx.neurons.activation import shipped_activation

    extra = {
        "SpikingSoftmax": neuron_attributes(SMALL),
        "SpikingNorm": {},
        "SpikingActivation": activation_attributes(shipped_activation("gelu", 8)),
    }[op]
    node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN, **attrs, **extra)
    with pytest.raises(Exception, match="(?i)expand"):
        _session(_model(node, TensorProto.FLOAT, SMALL.steps, activation_steps=8), library=False)
