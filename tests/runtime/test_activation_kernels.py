"""SpikingActivation: the CPU kernels (every instruction set), the CUDA kernel where there is a GPU,
and the function body that plain onnxruntime runs, each against the numpy reference, bit for bit."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from sit_onnx import domain
from sit_onnx.graph.activations import activation_attributes
from sit_onnx.graph.functions import spiking_functions
from sit_onnx.neurons.activation import ActivationParams, shipped_activation, spiking_activation
from sit_onnx.runtime.library import get_library_path
from tests.helpers import random_params
from tests.runtime.test_kernels import PROVIDERS, TYPES

ISAS = ["default", "avx2", "portable"]


def _model(attrs, dtype, rank, opset=17):
    node = helper.make_node(domain.SPIKING_ACTIVATION, ["x"], ["y"], name="act", domain=domain.DOMAIN, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TYPES[dtype], [None] * rank)],
        [helper.make_tensor_value_info("y", TYPES[dtype], [None] * rank)],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(domain.DOMAIN, 1)],
        functions=spiking_functions(len(attrs["resets"]), opset, len(attrs["resets"])),
    )


def _session(model, provider="cpu", library=True):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if library:
        options.register_custom_ops_library(get_library_path())
    if provider == "cuda":
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(model.SerializeToString(), options, providers=providers)


def _random_set(rng, steps, slopes=True, gate=False) -> ActivationParams:
    """Any neuron, bias and tails (also sloped ones on both sides): the ops must follow the reference.
    `gate`: a gate set (attribute gate=1: x times the neuron inside the range)."""
    tails = (
        (rng.uniform(-2, 2), rng.uniform(-1, 1), rng.uniform(-2, 2), rng.uniform(-1, 1)) if slopes else (0, -1, 0, 1)
    )
    return ActivationParams("gelu_gate" if gate else "tanh", random_params(rng, steps), float(rng.normal()), tails)


def _inputs(rng, params, shape, dtype):
    lo, hi = params.input_range
    x = rng.uniform(lo - 3, hi + 3, shape)
    flat = x.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, lo, hi, np.nextafter(np.float32(lo), -1), np.nextafter(np.float32(hi), 1), 0]
    flat[: min(flat.size, len(specials))] = specials[: flat.size]
    return x.astype(dtype)


SHAPES = [(0,), (1,), (9,), (3, 5, 17), (2, 40001)]


@pytest.mark.parametrize("gate", [False, True], ids=["direct", "gate"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("steps", [1, 8, 12, 64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernel_matches_reference_bit_for_bit(rng, provider, dtype, steps, shape, gate):
    params = _random_set(rng, steps, gate=gate)
    x = _inputs(rng, params, shape, dtype)
    got = _session(_model(activation_attributes(params), dtype, len(shape)), provider).run(None, {"x": x})[0]
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, spiking_activation(x, params))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_every_instruction_set_matches_reference(rng, monkeypatch, isa, dtype):
    if isa != "default":
        monkeypatch.setenv("SIT_ONNX_CPU_ISA", isa)
    for function in ("gelu", "silu", "sigmoid", "tanh", "gelu_gate", "silu_gate", "hardswish_gate"):
        params = shipped_activation(function, 12)
        x = _inputs(rng, params, (4, 1027), dtype)
        try:
            session = _session(_model(activation_attributes(params), dtype, 2))
        except Exception as exc:  # a CPU without the set: the kernel says so at session creation
            assert "lacks" in str(exc)
            pytest.skip(f"this CPU lacks {isa}")
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], spiking_activation(x, params))


@pytest.mark.parametrize("gate", [False, True], ids=["direct", "gate"])
@pytest.mark.parametrize("opset", [13, 17, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_function_body_matches_reference_bit_for_bit(rng, opset, dtype, gate):
    if dtype == np.float16 and opset < 15:
        pytest.skip("below opset 15 the rewrite feeds the body float32 (it has no casts)")
    params = _random_set(rng, 12, gate=gate)
    x = _inputs(rng, params, (3, 333), dtype)
    session = _session(_model(activation_attributes(params), dtype, 2, opset), library=False)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], spiking_activation(x, params))


def test_flat_tails_give_their_level_at_infinity(rng):
    """A slope of 0 is the intercept itself: GELU's 0 below the range stays 0 at -inf, not 0*-inf = NaN."""
    params = shipped_activation("gelu", 12)
    x = np.array([-np.inf, -1e30, np.inf, np.nan], dtype=np.float32)
    for library in (True, False):
        got = _session(_model(activation_attributes(params), np.float32, 1), library=library).run(None, {"x": x})[0]
        np.testing.assert_array_equal(got, [0.0, 0.0, np.inf, np.nan])


def _refused(attrs, library=True) -> str:
    with pytest.raises(Exception) as info:
        _session(_model(attrs, np.float32, 1), library=library).run(None, {"x": np.zeros(3, np.float32)})
    return str(info.value)


BAD = [
    ("low", 2.0, "low and high must be finite with low < high"),
    ("high", -9.0, "low and high must be finite with low < high"),
    ("high", -1.0, "low and high must be finite with low < high"),  # low == high
    ("tails", [0.0, 0.0, 1.0, 0.0, 2.0], "tails has 5 values; need 4"),
    ("low", float("nan"), "low and high must be finite"),
    ("tails", [0.0, 0.0, 1.0], "tails has 3 values; need 4"),
    ("tails", [0.0, float("inf"), 1.0, 0.0], "tails holds a NaN or infinite value"),
    ("bias", float("inf"), "bias must be finite"),
    ("low", 1, "low must be a float attribute"),
    ("bias", "0.5", "bias must be a float attribute"),
    ("high", [1.0], "high must be a float attribute"),
    ("weights", [1.0], "must have equal lengths"),
    ("gate", 2, "gate must be 0 or 1, got 2"),
    ("gate", -1, "gate must be 0 or 1, got -1"),
    ("gate", 1.0, "gate must be an int attribute"),
    ("tails", [0, 0, 1, 0], "tails must be a non-empty list of floats"),  # ints: onnxruntime reads them as []
    ("tails", 0.5, "tails must be a non-empty list of floats"),
    ("resets", "1.0", "resets must be a non-empty list of floats"),
]


@pytest.mark.parametrize("name, value, message", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_kernel_refuses_bad_attributes_at_session_creation_naming_the_node(rng, name, value, message):
    attrs = {**activation_attributes(_random_set(rng, 4)), "low": -1.0, "high": 1.0, name: value}
    text = _refused(attrs)
    assert message in text and "SpikingActivation node 'act'" in text


@pytest.mark.parametrize(
    "missing, message",
    [
        ("low", "missing float attribute low"),
        ("high", "missing float attribute high"),
        ("tails", "missing attribute tails (a list of floats)"),
        ("thresholds", "missing attribute thresholds (a list of floats)"),
    ],
)
def test_kernel_refuses_missing_required_attributes(rng, missing, message):
    attrs = activation_attributes(_random_set(rng, 4))
    del attrs[missing]
    assert f"SpikingActivation node 'act': {message}" in _refused(attrs)


def test_bias_is_optional_and_defaults_to_zero(rng):
    params = _random_set(rng, 6)
    attrs = activation_attributes(params)
    del attrs["bias"]
    x = _inputs(rng, params, (50,), np.float32)
    unbiased = ActivationParams(params.function, params.neuron, 0.0, params.tails)
    for library in (True, False):
        got = _session(_model(attrs, np.float32, 1), library=library).run(None, {"x": x})[0]
        np.testing.assert_array_equal(got, spiking_activation(x, unbiased))


def test_function_body_refuses_tails_of_another_length(rng):
    attrs = {**activation_attributes(_random_set(rng, 4)), "tails": [0.0, 1.0]}
    assert any(op in _refused(attrs, library=False).lower() for op in ("reshape", "split"))


VALUES_THE_BODY_REFUSES = [b[:2] for b in BAD[:8]]  # wrong values of the right types


@pytest.mark.parametrize("name, value", VALUES_THE_BODY_REFUSES, ids=[f"{n}={v}" for n, v in VALUES_THE_BODY_REFUSES])
def test_function_body_refuses_the_values_the_kernel_refuses(rng, name, value):
    """low >= high, NaN or infinite low/high/bias/tails, tails not of 4: the body had run with them
    (all but the tails' length), so a model refused with the library ran without it."""
    attrs = {**activation_attributes(_random_set(rng, 4)), "low": -1.0, "high": 1.0, name: value}
    text = _refused(attrs, library=False).lower()  # the Reshape, or the Split after it where
    assert "reshape" in text or "split" in text  # onnxruntime folds the constants at session creation


@pytest.mark.parametrize("gate", [2, -1, 7])
def test_function_body_refuses_a_gate_other_than_0_or_1(rng, gate):
    attrs = {**activation_attributes(_random_set(rng, 4)), "gate": gate}
    assert "expand" in _refused(attrs, library=False).lower()  # the flag's check


def test_gate_0_is_the_default_and_1_multiplies_by_x_inside_the_range_only(rng):
    """Absent or 0: the neuron's output; 1: x times it inside [low, high], the tails unchanged."""
    direct = _random_set(rng, 8)
    gated = ActivationParams("gelu_gate", direct.neuron, direct.bias, direct.tails)
    x = _inputs(rng, direct, (400,), np.float32)
    lo, hi = direct.input_range
    inside = (x >= np.float32(lo)) & (x <= np.float32(hi))
    for library in (True, False):
        plain = _session(_model(activation_attributes(direct), np.float32, 1), library=library).run(None, {"x": x})[0]
        zero = {**activation_attributes(direct), "gate": 0}
        np.testing.assert_array_equal(
            _session(_model(zero, np.float32, 1), library=library).run(None, {"x": x})[0], plain
        )
        got = _session(_model(activation_attributes(gated), np.float32, 1), library=library).run(None, {"x": x})[0]
        np.testing.assert_array_equal(got[inside], x[inside] * plain[inside])
        np.testing.assert_array_equal(got[~inside], plain[~inside])  # tails, NaN (x * NaN), +-inf
        assert np.any(got[inside] != plain[inside])
