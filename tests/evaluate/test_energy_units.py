"""Energy's per-node counts on hand-built nodes: the defaults of attributes a node may omit, grouped
convolutions, empty outputs."""

import numpy as np
import onnx
import pytest
from onnx import helper

from sit_onnx.domain import DOMAIN, SPIKING_EXP, SPIKING_NORM, SPIKING_SOFTMAX
from sit_onnx.evaluate.energy import _macs, _si_exp_accumulates, _si_norm_activity
from sit_onnx.neurons import NeuronParams, si_exp

STEPS = {"thresholds": [0.0, -1.0, -2.0], "resets": [1.0, 1.0, 1.0], "weights": [0.5, 0.3, 0.2]}


def _spikes(x):
    params = NeuronParams(STEPS["thresholds"], STEPS["resets"], STEPS["weights"], (-3, 0))
    return si_exp(x.astype(np.float32), params, return_spikes=True)[1].sum()


def test_si_exp_counts_two_accumulates_per_spike():
    x = np.array([[0.5, -0.5, -1.5, -4.0]], np.float32)
    node = helper.make_node(SPIKING_EXP, ["x"], ["y"], domain=DOMAIN, **STEPS)
    assert _si_exp_accumulates(node, x) == 2 * _spikes(x) > 0


def test_fused_node_without_attributes_shifts_along_the_last_axis_without_sigmoid():
    x = np.array([[3.0, 2.0, 0.5], [1.0, 1.0, -2.0]], np.float32)
    bare = helper.make_node(SPIKING_SOFTMAX, ["x"], ["y"], domain=DOMAIN, **STEPS)
    assert _si_exp_accumulates(bare, x) == 2 * _spikes(x - x.max(axis=-1, keepdims=True))
    columns = helper.make_node(SPIKING_SOFTMAX, ["x"], ["y"], domain=DOMAIN, axis=0, **STEPS)
    assert _si_exp_accumulates(columns, x) == 2 * _spikes(x - x.max(axis=0, keepdims=True))
    plain = helper.make_node(SPIKING_SOFTMAX, ["x"], ["y"], domain=DOMAIN, shift=0, **STEPS)
    assert _si_exp_accumulates(plain, x) == 2 * _spikes(x)
    squashed = helper.make_node(SPIKING_SOFTMAX, ["x"], ["y"], domain=DOMAIN, sigmoid=1, shift=0, **STEPS)
    assert _si_exp_accumulates(squashed, x) == 2 * _spikes(1 / (1 + np.exp(-x)))
    assert len({_si_exp_accumulates(n, x) for n in (bare, columns, plain, squashed)}) == 4


def test_si_norm_activity_amplified_and_rate_coded():
    out = np.array([[0.5, 0.25, 0.25, 0.0]], np.float32)
    amplified = helper.make_node(SPIKING_NORM, ["w"], ["y"], domain=DOMAIN)  # time_steps omitted: 0
    assert _si_norm_activity(amplified, out) == (0.75, 4.0)
    coded = helper.make_node(SPIKING_NORM, ["w"], ["y"], domain=DOMAIN, time_steps=8)
    assert _si_norm_activity(coded, out) == (2.0, 8 * 4 + 8.0)  # counts 4, 2, 2, 0
    empty = np.zeros((0, 4), np.float32)
    assert _si_norm_activity(amplified, empty) == (0.0, 0.0) and _si_norm_activity(coded, empty) == (0.0, 0.0)


def test_grouped_conv_macs_count_input_channels_per_group_and_kernel_area():
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=2)
    values = {"x": np.zeros((2, 4, 5, 5)), "w": np.zeros((6, 2, 3, 3)), "y": np.zeros((2, 6, 3, 3))}
    assert _macs(node, values, batch=2) == pytest.approx(6 * 3 * 3 * (2 * 3 * 3))


@pytest.mark.parametrize(
    "op, inputs, shapes, macs",
    [
        ("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], {"a": (2, 3, 4), "b": (4, 5)}, 3 * 5 * 4),
        ("MatMulInteger", ["a", "b"], {"a": (2, 3, 4), "b": (4, 5)}, 3 * 5 * 4),
        ("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"], {"x": (2, 4, 5, 5), "w": (6, 4, 3, 3)}, None),
        ("ConvInteger", ["x", "w"], {"x": (2, 4, 5, 5), "w": (6, 4, 3, 3)}, None),
    ],
)
def test_int8_layers_count_their_macs_like_the_float_ones(op, inputs, shapes, macs):
    """onnxruntime's quantizer writes these for MatMul and Conv; their weights sit at other inputs."""
    node = helper.make_node(op, inputs, ["y"])
    values = {n: np.zeros(shape) for n, shape in shapes.items()}
    values.update({n: np.zeros(()) for n in inputs if n not in values})
    values["y"] = np.zeros((2, 3, 5) if "a" in shapes else (2, 6, 3, 3))
    expected = macs if macs is not None else 6 * 3 * 3 * (4 * 3 * 3)  # out elements x C_in x kernel area
    assert _macs(node, values, batch=2) == pytest.approx(expected)


def test_an_int8_model_costs_what_its_float_original_costs_and_says_how(tmp_path):
    from bench.ort_tools import int8
    from sit_onnx.evaluate.energy import CAVEAT, INT8_CAVEAT, estimate_energy
    from tests.helpers import attention_classifier

    model, x, _ = attention_classifier(np.random.default_rng(0), 8)
    onnx.save(model, str(tmp_path / "m.onnx"))
    quantized = int8(tmp_path / "m.onnx", "dynamic")
    assert [n.op_type for n in quantized.graph.node].count("MatMulInteger") == 2
    float_report, int8_report = estimate_energy(model, None, {"x": x}), estimate_energy(quantized, None, {"x": x})
    assert int8_report.ann_pj == pytest.approx(float_report.ann_pj) and int8_report.ann_pj > 0
    assert [layer.op for layer in int8_report.layers] == ["MatMulInteger"] * 2
    assert float_report.caveat == CAVEAT and int8_report.caveat == CAVEAT + INT8_CAVEAT


def test_a_layer_fed_by_an_activation_counts_its_spikes_and_pays_macs_for_the_tails():
    from onnx import TensorProto, numpy_helper

    from sit_onnx.domain import SPIKING_ACTIVATION
    from sit_onnx.evaluate.energy import E_AC_PJ, E_MAC_PJ, _activation_activity, estimate_energy
    from sit_onnx.graph.activations import activation_attributes
    from sit_onnx.graph.functions import spiking_functions
    from sit_onnx.neurons.activation import shipped_activation, spiking_activation

    params = shipped_activation("gelu", 8)
    w = np.ones((6, 3), np.float32)
    act = helper.make_node(SPIKING_ACTIVATION, ["x"], ["a"], domain=DOMAIN, **activation_attributes(params))
    graph = helper.make_graph(
        [act, helper.make_node("MatMul", ["a", "w"], ["y"], name="fc")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)],
        functions=spiking_functions(8, 17, activation_steps=8),
    )
    x = np.array([[-9.0, -1.0, 0.0, 0.5, 2.0, 7.0], [-3.0, -0.2, 0.3, 1.0, 3.5, 4.5]], np.float32)
    spikes = spiking_activation(x, params, return_spikes=True)[1].sum()
    rate, analog, accumulates = _activation_activity(act, x)
    assert (rate, analog, accumulates) == (spikes / 12, 3 / 12, 2.0 * spikes)  # -9, 7 and 4.5 lie in the tails
    report = estimate_energy(model, model, {"x": x})
    (layer,) = report.layers
    assert layer.spike_rate == rate and layer.analog_share == analog
    assert layer.converted_pj == pytest.approx(layer.macs * (rate * E_AC_PJ + analog * E_MAC_PJ))
    assert report.neuron_ops == accumulates / 2
    assert _activation_activity(act, np.zeros((0, 6), np.float32)) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "between, driven",
    [
        ([], True),
        ([("Reshape", ["shape"])], True),  # onnxruntime's optimizer flattens before its Gemm
        ([("Cast", [], {"to": 10}), ("Cast", [], {"to": 1})], True),  # float16 around the op
        ([("Identity", []), ("Transpose", [], {"perm": [0, 1]}), ("Dropout", [])], True),
        ([("QuantizeLinear", ["scale", "zero"]), ("DequantizeLinear", ["scale", "zero"])], True),  # int8
        ([("Relu", [])], False),  # computes: what it passes on is no spike train
        ([("Slice", ["start", "end"])], False),
    ],
)
def test_spikes_reach_a_layer_through_ops_that_only_move_them(between, driven):
    from onnx import TensorProto, numpy_helper

    from sit_onnx.domain import SPIKING_ACTIVATION
    from sit_onnx.evaluate.energy import E_MAC_PJ, estimate_energy
    from sit_onnx.graph.activations import activation_attributes
    from sit_onnx.graph.functions import spiking_functions
    from sit_onnx.neurons.activation import shipped_activation

    params = shipped_activation("gelu", 8)
    nodes = [helper.make_node(SPIKING_ACTIVATION, ["x"], ["t0"], domain=DOMAIN, **activation_attributes(params))]
    for k, (op, extra, *attrs) in enumerate(between):
        nodes.append(helper.make_node(op, [f"t{k}", *extra], [f"t{k + 1}"], **(attrs[0] if attrs else {})))
    nodes.append(helper.make_node("Gemm", [f"t{len(between)}", "w"], ["y"], name="fc"))
    consts = {
        "w": np.ones((6, 3), np.float32),
        "shape": np.array([-1, 6], np.int64),
        "start": np.array([0], np.int64),
        "end": np.array([6], np.int64),
        "scale": np.array(0.01, np.float32),
        "zero": np.array(0, np.uint8),
    }
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)],
        functions=spiking_functions(8, 17, activation_steps=8),
    )
    x = np.array([[-3.0, -1.0, 0.0, 0.5, 2.0, 3.0], [-2.0, -0.2, 0.3, 1.0, 3.5, 2.5]], np.float32)
    (layer,) = estimate_energy(model, model, {"x": x}).layers
    assert (layer.spike_rate is not None) == driven
    if not driven:
        assert layer.converted_pj == layer.macs * E_MAC_PJ


def test_neuron_work_of_every_spiking_node_adds_up():
    """Two softmaxes and two activations on one input: the report's neuron work is the sum of each
    node's own, whichever order the nodes come in."""
    from onnx import TensorProto

    from sit_onnx.domain import SPIKING_ACTIVATION
    from sit_onnx.evaluate.energy import _activation_activity, estimate_energy
    from sit_onnx.graph.convert import RewriteOptions, rewrite_model
    from tests.helpers import run

    nodes = [
        helper.make_node("Sigmoid", ["x"], ["a"]),
        helper.make_node("Softmax", ["x"], ["s"], axis=-1),
        helper.make_node("Tanh", ["x"], ["b"]),
        helper.make_node("Softmax", ["x"], ["t"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 6]) for n in "asbt"],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    converted, _ = rewrite_model(model, RewriteOptions(activations=("sigmoid", "tanh")))
    x = np.random.default_rng(0).normal(0, 2, (4, 6)).astype(np.float32)
    spiking = [n for n in converted.graph.node if n.domain == DOMAIN]
    assert sorted(n.op_type for n in spiking) == [SPIKING_ACTIVATION] * 2 + [SPIKING_SOFTMAX] * 2
    values = dict(zip([o.name for o in converted.graph.output], run(converted, {"x": x})))
    work = 0.0
    for node in spiking:
        if node.op_type == SPIKING_ACTIVATION:
            work += _activation_activity(node, x)[2]
        else:
            work += _si_exp_accumulates(node, x) + _si_norm_activity(node, values[node.output[0]])[1]
    assert work > 0 and estimate_energy(model, converted, {"x": x}).neuron_ops == pytest.approx(work / 4)
