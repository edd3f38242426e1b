"""The custom-op kernels against the numpy reference, on CPU and (where present) CUDA."""

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import AttributeProto, TensorProto, helper

from sit_onnx import domain
from sit_onnx.graph.rewrite_softmax import neuron_attributes
from sit_onnx.neurons import NeuronParams, si_exp, si_norm
from sit_onnx.runtime.library import get_library_path
from tests.helpers import random_params

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
PROVIDERS = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(
                not HAS_CUDA, reason="no CUDA GPU / onnxruntime-gpu here: the CUDA kernels are compiled, not run"
            ),
        ],
    ),
]
TYPES = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}


def _session(node, dtype, shape_rank, provider="cpu"):
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TYPES[dtype], [None] * shape_rank)],
        [helper.make_tensor_value_info("y", TYPES[dtype], None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain.DOMAIN, 1)])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.register_custom_ops_library(get_library_path())
    if provider == "cuda":  # the op must run on the CUDA kernel: no silent fall back to the CPU one
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    if provider == "cuda":
        assert session.get_providers()[0] == "CUDAExecutionProvider"
    return session


def _exp_node(params, name="exp"):
    attrs = neuron_attributes(params)
    return helper.make_node(domain.SPIKING_EXP, ["x"], ["y"], name=name, domain=domain.DOMAIN, **attrs)


def _norm_node(axis, time_steps, name="norm"):
    return helper.make_node(
        domain.SPIKING_NORM, ["x"], ["y"], name=name, domain=domain.DOMAIN, axis=axis, time_steps=time_steps
    )


def test_domain_constants_match_cpp_header():
    header = (Path(__file__).parents[2] / "custom_ops" / "include" / "sit_domain.h").read_text()
    values = dict(re.findall(r'(k\w+) = "?([\w.]+)"?;', header))
    assert values == {
        "kDomain": domain.DOMAIN,
        "kDomainVersion": str(domain.DOMAIN_VERSION),
        "kSpikingExp": domain.SPIKING_EXP,
        "kSpikingNorm": domain.SPIKING_NORM,
        "kSpikingSoftmax": domain.SPIKING_SOFTMAX,
        "kSpikingActivation": domain.SPIKING_ACTIVATION,
        "kMaxSteps": str(domain.MAX_STEPS),
    }


def test_library_loads_in_cpu_onnxruntime():
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())  # raises if it cannot load (e.g. a shared cudart)


SHAPES = [(0,), (1,), (7,), (3, 5, 11), (2, 1, 40000)]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("steps", [1, 4, 12, 64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_spiking_exp_matches_reference(rng, provider, dtype, steps, shape):
    params = random_params(rng, steps)
    x = rng.uniform(-10, 3, shape).astype(dtype)
    got = _session(_exp_node(params), dtype, len(shape), provider).run(None, {"x": x})[0]
    assert got.dtype == dtype and got.shape == x.shape
    expected = si_exp(x, params)
    np.testing.assert_allclose(
        got.astype(np.float32), expected.astype(np.float32), rtol=1e-6 if dtype == np.float32 else 1e-3
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_spiking_exp_edge_values(rng, provider):
    params = random_params(rng, 12)
    x = np.array([np.nan, np.inf, -np.inf, -3.4e38, 3.4e38, 0.0], dtype=np.float32)
    got = _session(_exp_node(params), np.float32, 1, provider).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, si_exp(x, params))


NORM_CASES = [
    ((5,), 0),
    ((1,), -1),
    ((4, 9), 1),
    ((4, 9), 0),
    ((2, 3, 4, 5), 1),
    ((2, 3, 4, 5), -2),
    ((2, 3, 197), -1),
    ((3, 0, 4), 1),
    ((3, 0, 4), 2),
    ((64, 3000), -1),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("time_steps", [0, 1, 16])
@pytest.mark.parametrize("shape, axis", NORM_CASES, ids=str)
def test_spiking_norm_matches_reference(rng, provider, dtype, time_steps, shape, axis):
    w = rng.uniform(0, 3, shape).astype(dtype)
    got = _session(_norm_node(axis, time_steps), dtype, len(shape), provider).run(None, {"x": w})[0]
    assert got.dtype == dtype and got.shape == w.shape
    expected = si_norm(w, axis=axis, time_steps=time_steps).astype(np.float32)
    got = got.astype(np.float32)
    if time_steps:  # floor() may differ by one spike where N*w/V_th is an integer within rounding
        assert np.count_nonzero(np.abs(got - expected) > 1e-3) <= 0.01 * got.size
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 2e-3, atol=1e-7)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_spiking_norm_edge_rows(provider):
    w = np.array([[0, 0, 0], [1, -1, 0], [np.nan, 1, 1], [1, 2, 1]], dtype=np.float32)
    got = _session(_norm_node(-1, 0), np.float32, 2, provider).run(None, {"x": w})[0]
    np.testing.assert_array_equal(got[:2], 0)
    assert np.all(np.isnan(got[2]))
    np.testing.assert_allclose(got[3], [0.25, 0.5, 0.25])


@pytest.mark.parametrize(
    "node, message",
    [
        (
            helper.make_node(
                "SpikingExp",
                ["x"],
                ["y"],
                name="bad_len",
                domain="ai.sit",
                thresholds=[0.0, 1.0],
                resets=[1.0],
                weights=[1.0, 1.0],
            ),
            "SpikingExp node 'bad_len'.*equal lengths",
        ),
        (
            helper.make_node(
                "SpikingExp",
                ["x"],
                ["y"],
                name="too_long",
                domain="ai.sit",
                thresholds=[0.0] * 65,
                resets=[0.0] * 65,
                weights=[0.0] * 65,
            ),
            "too_long.*1 to 64",
        ),
        (
            helper.make_node(
                "SpikingExp",
                ["x"],
                ["y"],
                name="nan_step",
                domain="ai.sit",
                thresholds=[float("nan")],
                resets=[1.0],
                weights=[1.0],
            ),
            "nan_step.*NaN",
        ),
        (
            helper.make_node(
                "SpikingExp", ["x"], ["y"], name="missing", domain="ai.sit", thresholds=[0.0], resets=[1.0]
            ),
            r"SpikingExp node 'missing': missing attribute weights \(a list of floats\)",
        ),
        (
            helper.make_node("SpikingNorm", ["x"], ["y"], name="neg_n", domain="ai.sit", axis=-1, time_steps=-2),
            "SpikingNorm node 'neg_n'.*time_steps must be >= 0",
        ),
        (
            helper.make_node("SpikingNorm", ["x"], ["y"], name="far_axis", domain="ai.sit", axis=3, time_steps=0),
            "far_axis.*axis 3 is out of range for a rank-2",
        ),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else "",
)
def test_bad_attributes_refused_at_session_creation(node, message):
    with pytest.raises(Exception, match=message):
        _session(node, np.float32, 2)


def test_axis_out_of_range_for_dynamic_rank_fails_cleanly_at_run_time():
    graph = helper.make_graph(
        [_norm_node(5, 0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)])
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="axis 5 is out of range"):
        session.run(None, {"x": np.ones((2, 3), np.float32)})


def _softmax_node(params, axis, time_steps, shift, sigmoid, name="fused"):
    flags = {"axis": axis, "time_steps": time_steps, "shift": int(shift), "sigmoid": int(sigmoid)}
    return helper.make_node(
        domain.SPIKING_SOFTMAX, ["x"], ["y"], name=name, domain=domain.DOMAIN, **neuron_attributes(params), **flags
    )


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(
    "shift, sigmoid, time_steps", [(True, False, 0), (False, False, 0), (True, True, 0), (True, False, 16)]
)
@pytest.mark.parametrize(
    "shape, axis",
    [
        ((5,), 0),
        ((4, 9), 1),
        ((4, 9), 0),
        ((2, 3, 4, 5), -2),
        ((2, 3, 197), -1),
        ((3, 0, 4), 1),
        ((8, 1000), -1),
        ((2, 3000), -1),
    ],
    ids=str,
)
def test_spiking_softmax_matches_reference(rng, provider, dtype, shift, sigmoid, time_steps, shape, axis):
    from sit_onnx.neurons import SoftmaxOptions, spiking_softmax

    params = random_params(rng, 12)
    x = rng.normal(0, 3, shape).astype(dtype)
    node = _softmax_node(params, axis, time_steps, shift, sigmoid)
    got = _session(node, dtype, len(shape), provider).run(None, {"x": x})[0]
    assert got.dtype == dtype and got.shape == x.shape
    expected = spiking_softmax(x, params, axis=axis, options=SoftmaxOptions(sigmoid, shift, time_steps))
    got, expected = got.astype(np.float32), expected.astype(np.float32)
    # a 1-ulp difference (row sum order, expf in the sigmoid) can move one threshold crossing or floor()
    tolerance = 1e-5 if dtype == np.float32 else 2e-3
    assert np.count_nonzero(np.abs(got - expected) > tolerance) <= max(1, 0.01 * got.size)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_spiking_softmax_mask_rows(rng, provider):
    from sit_onnx.neurons import SoftmaxOptions, spiking_softmax

    params = random_params(rng, 12)
    x = np.array([[0, 1, -3.4e38, -np.inf], [-3.4e38] * 4, [np.nan, 0, 1, 2], [-np.inf] * 4], dtype=np.float32)
    got = _session(_softmax_node(params, -1, 0, True, False), np.float32, 2, provider).run(None, {"x": x})[0]
    expected = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.array_equal(np.isnan(got), np.isnan(expected))


def test_spiking_softmax_bad_flags_refused():
    params = NeuronParams([0.0], [1.0], [1.0], (-1, 1))
    with pytest.raises(Exception, match="SpikingSoftmax node 'fused'.*shift and sigmoid must be 0 or 1"):
        _session(_softmax_node(params, -1, 0, 2, False), np.float32, 2)


# The CPU inner loops exist once per instruction set (custom_ops/cpu/simd_*.cc); each is checked
# here on row lengths around its vector widths (4, 8, 16 floats) and blocks (32, 48, 128 floats).
KERNEL_SETS = ["avx512", "avx2", "portable"]
ROW_LENGTHS = [1, 3, 4, 5, 8, 15, 16, 17, 31, 33, 47, 48, 49, 63, 64, 65, 127, 128, 129, 197, 257]


def _use_kernel_set(monkeypatch, isa):
    """Makes new sessions run `isa`; skips when this CPU cannot (the session says why)."""
    monkeypatch.setenv("SIT_ONNX_CPU_ISA", isa)
    try:
        _session(_norm_node(-1, 0), np.float32, 1)
    except Exception as exc:  # onnxruntime raises its own exception types
        if "lacks" in str(exc):
            pytest.skip(f"this CPU does not run the {isa} kernels")
        raise


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n", ROW_LENGTHS)
def test_cpu_kernel_sets_match_reference(rng, monkeypatch, isa, dtype, n):
    from sit_onnx.neurons import SoftmaxOptions, spiking_softmax

    _use_kernel_set(monkeypatch, isa)
    params = random_params(rng, 12)
    x = rng.normal(0, 3, (3, n)).astype(dtype)
    x.flat[rng.integers(0, x.size)] = np.nan  # one NaN somewhere: its element (SI-exp) or its row (softmax)
    tolerance = 1e-6 if dtype == np.float32 else 1e-3

    # SI-exp is exact: the reference's float32 operations in its order, then the same rounding to float16
    got = _session(_exp_node(params), dtype, 2).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, si_exp(x, params))

    w = np.abs(x)
    for axis, time_steps in ((-1, 0), (0, 0), (-1, 16)):
        got = _session(_norm_node(axis, time_steps), dtype, 2).run(None, {"x": w})[0].astype(np.float32)
        expected = si_norm(w, axis=axis, time_steps=time_steps).astype(np.float32)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        assert np.count_nonzero(np.abs(got - expected) > 10 * tolerance) <= (got.size // 100 if time_steps else 0)

    for shift, sigmoid, axis in ((True, False, -1), (False, False, -1), (True, False, 0), (False, True, -1)):
        node = _softmax_node(params, axis, 0, shift, sigmoid)
        got = _session(node, dtype, 2).run(None, {"x": x})[0].astype(np.float32)
        options = SoftmaxOptions(sigmoid=sigmoid, shift=shift)
        expected = spiking_softmax(x, params, axis=axis, options=options).astype(np.float32)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        assert np.count_nonzero(np.abs(got - expected) > 10 * tolerance) <= max(1, got.size // 100)


# SI-exp steps up to 13 vectors together (AVX-512; 10 on AVX2), in groups of equal size, and lets
# rows of whole vectors share groups 8 rows at a time: lengths around the group sizes (9 vectors is
# the first to add on the FMA units, 14 splits in two) and row counts around the 8-row chunks.
GROUP_LENGTHS = [64, 80, 144, 208, 224, 432]


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("n", GROUP_LENGTHS)
@pytest.mark.parametrize("rows", [1, 8, 11, 17])
def test_cpu_rows_sharing_groups_match_reference(rng, monkeypatch, isa, n, rows):
    from sit_onnx.neurons import SoftmaxOptions, spiking_softmax

    _use_kernel_set(monkeypatch, isa)
    params = random_params(rng, 12)
    x = rng.normal(0, 3, (rows, n)).astype(np.float32)
    x[:, 0] += np.arange(rows, dtype=np.float32)  # every row its own maximum: a row shifted by another's shows
    got = _session(_exp_node(params), np.float32, 2).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, si_exp(x, params))
    for time_steps in (0, 16):
        got = _session(_softmax_node(params, -1, time_steps, True, False), np.float32, 2).run(None, {"x": x})[0]
        expected = spiking_softmax(x, params, options=SoftmaxOptions(shift=True, time_steps=time_steps))
        assert np.count_nonzero(np.abs(got - expected) > 1e-6) <= (rows if time_steps else 0)
    # the same rows down the first axis (gathered into rows by the column path), and in float16
    expected = spiking_softmax(x, params, options=SoftmaxOptions(shift=True))
    got = _session(_softmax_node(params, 0, 0, True, False), np.float32, 2).run(None, {"x": x.T.copy()})[0]
    assert np.count_nonzero(np.abs(got - expected.T) > 1e-6) == 0
    half = x.astype(np.float16)
    got = _session(_softmax_node(params, -1, 0, True, False), np.float16, 2).run(None, {"x": half})[0]
    expected = spiking_softmax(half, params, options=SoftmaxOptions(shift=True)).astype(np.float32)
    assert np.count_nonzero(np.abs(got.astype(np.float32) - expected) > 1e-3) <= max(1, got.size // 100)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("shift", [False, True])
def test_cpu_kernel_sets_sigmoid_edges(rng, monkeypatch, isa, shift):
    """The kernels' own vectorised Sigmoid at the ends of float32 and around exp's overflow."""
    from sit_onnx.neurons import SoftmaxOptions, spiking_softmax

    _use_kernel_set(monkeypatch, isa)
    params = random_params(rng, 12)
    edges = [-np.inf, -3.4e38, -100, -88.8, -88.7, -87, -20, -1, -1e-8, 0, 1e-8, 1, 20, 87, 88.8, 100, 3.4e38, np.inf]
    x = np.array([edges, edges[::-1], rng.normal(0, 30, len(edges))], dtype=np.float32)
    got = _session(_softmax_node(params, -1, 0, shift, True), np.float32, 2).run(None, {"x": x})[0]
    expected = spiking_softmax(x, params, options=SoftmaxOptions(sigmoid=True, shift=shift))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    nan_row = np.array([[0, np.nan, 1]], dtype=np.float32)
    assert np.isnan(
        _session(_softmax_node(params, -1, 0, shift, True), np.float32, 2).run(None, {"x": nan_row})[0]
    ).all()


@pytest.mark.parametrize("isa", KERNEL_SETS)
def test_cpu_kernel_sets_sigmoid_on_many_values(monkeypatch, isa):
    """Through a 24-step binary neuron (thresholds = resets = weights = 2^-t), which passes values in
    [0, 1) on to 2^-24, so the output shows the Sigmoid's own error: within a few ulp of float32's."""
    from sit_onnx.neurons import SoftmaxOptions, spiking_softmax

    _use_kernel_set(monkeypatch, isa)
    bits = 2.0 ** -np.arange(1, 25)
    params = NeuronParams(bits, bits, bits, (0, 1))
    x = np.random.default_rng(1).normal(0, 4, (1000, 100)).astype(np.float32)
    got = _session(_softmax_node(params, -1, 0, False, True), np.float32, 2).run(None, {"x": x})[0]
    expected = spiking_softmax(x, params, options=SoftmaxOptions(sigmoid=True))
    # measured 6-8e-9 here (outputs ~0.01); an exp polynomial coefficient off by 2e-4 gives 9e-8
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-8)


def test_unknown_kernel_set_refused_at_session_creation(monkeypatch):
    monkeypatch.setenv("SIT_ONNX_CPU_ISA", "sse9")
    with pytest.raises(Exception, match="SpikingNorm node 'norm'.*SIT_ONNX_CPU_ISA=sse9 is not a kernel set"):
        _session(_norm_node(-1, 0), np.float32, 1)


def _typed_node(op, name, **attrs):
    """A node whose attributes may carry the wrong type (make_node infers the type from the value;
    an empty list is written as an empty list of floats)."""
    base = {}
    if op in ("SpikingExp", "SpikingSoftmax"):
        base = {"thresholds": [0.0, -1.0], "resets": [1.0, 1.0], "weights": [1.0, 0.5]}
    merged = {**base, **attrs}
    given = {k: v for k, v in merged.items() if v != []}
    node = helper.make_node(op, ["x"], ["y"], name=name, domain="ai.sit", **given)
    empty = [k for k in merged if k not in given]
    node.attribute.extend(helper.make_attribute(k, [], attr_type=AttributeProto.FLOATS) for k in empty)
    return node


@pytest.mark.parametrize(
    "op, attr, value",
    [
        ("SpikingNorm", "axis", 0.0),
        ("SpikingNorm", "axis", "0"),
        ("SpikingNorm", "axis", [0]),
        ("SpikingNorm", "time_steps", -5.0),
        ("SpikingNorm", "time_steps", [4, 4]),
        ("SpikingSoftmax", "axis", 0.0),
        ("SpikingSoftmax", "time_steps", 4.0),
        ("SpikingSoftmax", "shift", 1.0),
        ("SpikingSoftmax", "sigmoid", "yes"),
    ],
)
def test_wrongly_typed_int_attribute_is_refused_not_defaulted(op, attr, value):
    with pytest.raises(Exception, match=f"{op} node 'typed': {attr} must be an int attribute"):
        _session(_typed_node(op, "typed", **{attr: value}), np.float32, 2)


@pytest.mark.parametrize(
    "node, message",
    [
        (_typed_node("SpikingExp", "short_d", weights=[1.0]), "short_d.*equal lengths"),
        (_typed_node("SpikingExp", "ints", thresholds=[0, 1]), "'ints': thresholds must be a non-empty list of floats"),
        (_typed_node("SpikingExp", "one", resets=1.0), "'one': resets must be a non-empty list of floats"),
        (_typed_node("SpikingSoftmax", "text", weights="1 0.5"), "'text': weights must be a non-empty list of floats"),
        (_typed_node("SpikingSoftmax", "empty", resets=[]), "'empty': resets must be a non-empty list of floats"),
        (_typed_node("SpikingNorm", "at_rank", axis=2), "at_rank.*axis 2 is out of range for a rank-2"),
        (_typed_node("SpikingNorm", "below", axis=-3), "below.*axis -3 is out of range"),
        (_typed_node("SpikingSoftmax", "sig2", sigmoid=2), "sig2.*shift and sigmoid must be 0 or 1"),
        (_typed_node("SpikingSoftmax", "shift_neg", shift=-1), "shift_neg.*shift and sigmoid must be 0 or 1"),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else "",
)
def test_contract_violations_refused_at_session_creation(node, message):
    with pytest.raises(Exception, match=message):
        _session(node, np.float32, 2)


def test_absent_int_attributes_take_their_defaults(rng):
    x = rng.uniform(0, 1, (3, 5)).astype(np.float32)
    got = _session(_typed_node("SpikingNorm", "defaults"), np.float32, 2).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, si_norm(x, axis=-1, time_steps=0), rtol=1e-6)


@pytest.mark.parametrize("isa", KERNEL_SETS)
def test_every_kernel_set_fires_at_exact_threshold(monkeypatch, isa):
    """H(0) = 1: an input equal to a threshold fires, in every instruction set (>= not >)."""
    _use_kernel_set(monkeypatch, isa)
    params = NeuronParams([0.5, -0.25, -1.0], [0.75, 0.5, 0.25], [2.0, 1.0, 0.5], (-1, 1))
    x = np.array([0.5, -0.25, -1.0, 0.25, -1.25] * 8, np.float32)  # 40: vector bodies and a tail
    got = _session(_exp_node(params), np.float32, 1).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, si_exp(x, params))
    assert got[0] == 2.0 + 1.0 + 0.5  # 0.5 fires, then -0.25 fires, then -1.0 fires


REGISTRATION_GROWTH = """
import resource, sys
from pathlib import Path
import onnxruntime as ort
from sit_onnx.runtime.library import get_library_path

def rss_kb():
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() // 1024

options, path = ort.SessionOptions(), get_library_path()
for _ in range(200):  # warm up allocator pools
    options.register_custom_ops_library(path)
growth = []
for _ in range(3):
    before = rss_kb()
    for _ in range(3000):
        options.register_custom_ops_library(path)
    growth.append(rss_kb() - before)
print(min(growth))
"""


def test_registering_the_library_again_and_again_does_not_grow_memory():
    """Every registration shares one domain (it was a new ~3 kB domain per call: 9 MB per 3,000).
    Measured on one SessionOptions: onnxruntime's Python binding keeps ~2.5 kB of its own per new
    SessionOptions that registers a library, which is not ours to free. In a fresh process, as the
    smallest growth of three rounds: a leak grows in every round, allocator noise does not (inside
    the long test process one round once grew 4 MB)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", REGISTRATION_GROWTH], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < 1500
