"""The energy estimate's counts, worked out by hand on tiny graphs: MACs per layer type, and the
spiking neurons' own accumulates for every form of the conversion."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.evaluate.energy import CAVEAT, E_AC_PJ, E_MAC_PJ, estimate_energy
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import NeuronParams, SoftmaxOptions, si_exp
from sit_onnx.neurons.softmax import prepare_input


def _layers_model():
    """MatMul [2,3,4]x[4,5]; Gemm with transA ([4,2]^T x [4,3]); Conv [2,1,4,4] * [3,1,2,2]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 5)).astype(np.float32), "w_mm"),
        numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w_gemm"),
        numpy_helper.from_array(rng.normal(size=(3, 1, 2, 2)).astype(np.float32), "w_conv"),
        numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b_conv"),
    ]
    nodes = [
        helper.make_node("MatMul", ["a", "w_mm"], ["mm"], name="mm"),
        helper.make_node("Gemm", ["g", "w_gemm"], ["gemm"], name="gemm", transA=1),
        helper.make_node("Conv", ["c", "w_conv", "b_conv"], ["conv"], name="conv"),
    ]
    inputs = [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4]),
        helper.make_tensor_value_info("g", TensorProto.FLOAT, [4, 2]),
        helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 1, 4, 4]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("mm", "gemm", "conv")]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_macs_per_sample_of_each_layer_type():
    rng = np.random.default_rng(1)
    feeds = {
        "a": rng.normal(size=(2, 3, 4)).astype(np.float32),
        "g": rng.normal(size=(4, 2)).astype(np.float32),
        "c": rng.normal(size=(2, 1, 4, 4)).astype(np.float32),
    }
    report = estimate_energy(_layers_model(), None, feeds)  # batch = 2 (the first input's rows)
    macs = {layer.name: layer.macs for layer in report.layers}
    assert macs == {"mm": 2 * 3 * 5 * 4 / 2, "gemm": 2 * 3 * 4 / 2, "conv": 2 * 3 * 3 * 3 * 1 * 2 * 2 / 2}
    assert report.ann_pj == pytest.approx(sum(macs.values()) * E_MAC_PJ) and report.samples == 2


def _softmax_model():
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "options",
    [{}, {"fuse": False}, {"sigmoid": True}, {"sigmoid": True, "fuse": False}, {"shift": False}, {"time_steps": 8}],
    ids=["fused", "chain", "fused-sigmoid", "chain-sigmoid", "no-shift", "rate-coded"],
)
def test_neuron_accumulates_match_the_spikes(tmp_path, params_file, options):
    from sit_onnx.neurons import load_params

    params: NeuronParams = load_params(params_file)
    x = np.random.default_rng(2).normal(0, 3, (3, 6)).astype(np.float32)
    original = _softmax_model()
    converted, _ = rewrite_model(original, RewriteOptions(params_file=params_file, **options))
    report = estimate_energy(original, converted, {"x": x})
    softmax_options = SoftmaxOptions(
        options.get("sigmoid", False), options.get("shift", True), options.get("time_steps", 0)
    )
    _, spikes = si_exp(prepare_input(x, -1, softmax_options), params, return_spikes=True)
    out = converted_output(converted, x)
    steps = options.get("time_steps", 0)
    norm = steps * x.size + np.rint(out * steps).sum() if steps else x.size
    assert report.neuron_ops == pytest.approx((2 * spikes.sum() + norm) / 3)
    assert report.converted_pj == pytest.approx(report.neuron_ops * E_AC_PJ)  # no compute layers here


def converted_output(model, x):
    from tests.helpers import run

    return run(model, {"x": x})[0].astype(np.float64)


def _attention_model():
    """scores [2,4,4] -> Softmax -> MatMul with v [4,3] (event-driven once converted); an unnamed
    Gemm on another input (stays an ANN layer)."""
    rng = np.random.default_rng(5)
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["s"], ["p"], name="sm", axis=-1),
            helper.make_node("MatMul", ["p", "v"], ["ctx"], name="pv"),
            helper.make_node("Gemm", ["g", "w"], ["dense"]),
        ],
        "att",
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 4, 4]),
            helper.make_tensor_value_info("g", TensorProto.FLOAT, [2, 5]),
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("ctx", "dense")],
        [
            numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "v"),
            numpy_helper.from_array(rng.normal(size=(5, 6)).astype(np.float32), "w"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("time_steps", [0, 16])
def test_layers_fed_by_spikes_are_event_driven(params_file, time_steps):

    rng = np.random.default_rng(6)
    feeds = {"s": rng.normal(0, 4, (2, 4, 4)).astype(np.float32), "g": rng.normal(size=(2, 5)).astype(np.float32)}
    original = _attention_model()
    converted, _ = rewrite_model(original, RewriteOptions(params_file=params_file, time_steps=time_steps))
    report = estimate_energy(original, converted, feeds)
    layers = {layer.name: layer for layer in report.layers}
    assert set(layers) == {"pv", "dense"}  # an unnamed node is named by its output
    pv, dense = layers["pv"], layers["dense"]
    assert (pv.macs, dense.macs) == (4 * 3 * 4, 6 * 5)  # per sample: batch 2
    p = _softmax_output(converted, feeds)
    rate = np.rint(p * time_steps).mean() if time_steps else np.mean(p != 0)
    assert pv.spike_rate == pytest.approx(rate) and dense.spike_rate is None
    assert pv.converted_pj == pytest.approx(pv.macs * rate * E_AC_PJ) and pv.ann_pj == pv.macs * E_MAC_PJ
    assert dense.converted_pj == dense.ann_pj == dense.macs * E_MAC_PJ
    assert report.ann_pj == pytest.approx(pv.ann_pj + dense.ann_pj)
    total = pv.converted_pj + dense.converted_pj + report.neuron_ops * E_AC_PJ
    assert report.converted_pj == pytest.approx(total)
    assert report.reduction == pytest.approx(1 - report.converted_pj / report.ann_pj)
    ann_only = estimate_energy(original, None, feeds)  # no conversion: every layer at E_MAC
    assert ann_only.neuron_ops == 0 and ann_only.converted_pj == pytest.approx(ann_only.ann_pj)
    assert ann_only.reduction == pytest.approx(0.0)
    assert [layer.spike_rate for layer in ann_only.layers] == [None, None]


def _softmax_output(model, feeds):
    """The SpikingSoftmax node's output, read out as a graph output."""
    from sit_onnx.evaluate.capture import capture

    node = next(n for n in model.graph.node if n.op_type == "SpikingSoftmax")
    return capture(model, [node.output[0]], feeds)[node.output[0]].astype(np.float64)


def test_gemm_without_transpose_counts_its_inner_dimension():
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["a", "w"], ["y"], name="gemm")],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((7, 2), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    report = estimate_energy(model, None, {"a": np.ones((3, 7), np.float32)})
    assert report.layers[0].macs == 3 * 2 * 7 / 3


def test_neuron_accumulates_follow_the_softmax_axis(params_file):
    """The fused neuron sees x minus the max along its own axis, not along the last one."""
    from sit_onnx.neurons import load_params

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])],
    )
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(3).normal(0, 3, (4, 6)).astype(np.float32)
    converted, _ = rewrite_model(original, RewriteOptions(params_file=params_file))
    report = estimate_energy(original, converted, {"x": x})
    params = load_params(params_file)
    _, spikes = si_exp(prepare_input(x, 0, SoftmaxOptions(shift=True)), params, return_spikes=True)
    _, wrong = si_exp(prepare_input(x, -1, SoftmaxOptions(shift=True)), params, return_spikes=True)
    assert spikes.sum() != wrong.sum()
    assert report.neuron_ops == pytest.approx((2 * spikes.sum() + x.size) / 4)


@pytest.mark.parametrize("use_cache", [False, True])
def test_a_merged_decoders_taken_branch_is_counted(use_cache):
    """optimum's merged decoder holds every layer in an If's branches: the branch the data takes is
    counted (it read 0 layers, 0 nJ), the other left out."""
    import onnx

    from sit_onnx.evaluate.inputs import generate_feeds
    from sit_onnx.runtime.session import SessionSpec, make_session
    from tests.graph.test_optimum_decoder import MERGED

    model = onnx.load(MERGED)
    feeds = generate_feeds(make_session(model, SessionSpec(use_library=False)), 2, model=model)
    feeds["use_cache_branch"][...] = use_cache
    report = estimate_energy(model, rewrite_model(model, RewriteOptions())[0], feeds)
    branch = next(
        a.g for a in model.graph.node[-1].attribute if a.name == ("then_branch" if use_cache else "else_branch")
    )
    counted = sum(n.op_type in ("MatMul", "Gemm", "Conv") for n in branch.node)
    assert len(report.layers) == counted > 0 and report.ann_pj > report.converted_pj > 0
    assert "not counted" not in report.caveat


def test_layers_in_a_branch_the_data_does_not_fix_are_named_as_not_counted():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")

    def branch(name, op):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [2, 4])
        if op == "Identity":
            nodes = [helper.make_node(op, ["y"], [f"{name}_out"])]
        else:  # two layers
            nodes = [helper.make_node("MatMul", ["y", "w"], ["twice"]),
                     helper.make_node("MatMul", ["twice", "w"], [f"{name}_out"])]  # fmt: skip
        return helper.make_graph(nodes, name, [], [out])

    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"], name="main_layer"),
        helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node("If", ["positive"], ["z"], then_branch=branch("then", "MatMul"),
                         else_branch=branch("else", "Identity")),
    ]  # fmt: skip
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    graph = helper.make_graph(
        nodes, "g", [x], [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 4])], [w, zero]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    report = estimate_energy(model, None, {"x": np.ones((2, 4), np.float32)})
    assert [layer.name for layer in report.layers] == ["main_layer"]
    assert report.caveat == CAVEAT + (
        "; layers in subgraphs (Loop bodies, a generation op's decoder, an If whose condition the data does "
        "not fix), not counted: 2"
    )


def _products_model():
    """Einsum attention scores and weights x values, an ellipsis Einsum, a one-operand Einsum (a
    transpose: no product), a ConvTranspose [2,1,3,3] * [1,2,2,2]."""
    rng = np.random.default_rng(8)
    nodes = [
        helper.make_node("Einsum", ["q", "k"], ["s"], name="qk", equation="bhqd,bhkd->bhqk"),
        helper.make_node("Softmax", ["s"], ["p"], name="sm", axis=-1),
        helper.make_node("Einsum", ["p", "v"], ["ctx"], name="pv", equation="bhqk,bhkd->bhqd"),
        helper.make_node("Einsum", ["ctx", "w"], ["out"], name="proj", equation="...d,de->...e"),
        helper.make_node("Einsum", ["ctx"], ["t"], name="swap", equation="bhqd->bhdq"),
        helper.make_node("ConvTranspose", ["img", "wt"], ["up"], name="up"),
    ]
    shapes = {"q": [2, 3, 4, 5], "k": [2, 3, 6, 5], "v": [2, 3, 6, 5], "img": [2, 1, 3, 3]}
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("out", "t", "up")]
    weights = [
        numpy_helper.from_array(rng.normal(size=(5, 7)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(1, 2, 2, 2)).astype(np.float32), "wt"),
    ]
    graph = helper.make_graph(nodes, "products", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shapes


def test_einsum_and_conv_transpose_count_their_products(params_file):
    """Missed, they made an Einsum attention cost nothing (jax2onnx and torch.einsum write them)."""
    model, shapes = _products_model()
    rng = np.random.default_rng(9)
    feeds = {n: rng.normal(0, 3, s).astype(np.float32) for n, s in shapes.items()}
    report = estimate_energy(model, None, feeds)
    macs = {layer.name: layer.macs for layer in report.layers}
    assert macs == {  # per sample: batch 2; a transpose Einsum is no layer
        "qk": 3 * 4 * 6 * 5,
        "pv": 3 * 4 * 6 * 5,
        "proj": 3 * 4 * 5 * 7,
        "up": 1 * 3 * 3 * 2 * 2 * 2,
    }
    converted, _ = rewrite_model(model, RewriteOptions(params_file=params_file))
    spiking = {layer.name: layer for layer in estimate_energy(model, converted, feeds).layers}
    assert spiking["pv"].spike_rate is not None and spiking["pv"].converted_pj < spiking["pv"].ann_pj
    assert spiking["qk"].spike_rate is None and spiking["qk"].converted_pj == spiking["qk"].ann_pj


@pytest.mark.parametrize(
    ("equation", "a", "b", "space"),
    [
        ("bhqd, bhkd -> bhqk", [2, 3, 4, 5], [2, 3, 6, 5], 2 * 3 * 4 * 5 * 6),  # spaces in the equation
        ("...ij,...jk->...ik", [2, 3, 4, 5], [3, 5, 6], 2 * 3 * 4 * 5 * 6),  # ellipses of two lengths, right-aligned
        ("bij,bjk->bik", [2, 4, 5], [1, 5, 6], 2 * 4 * 5 * 6),  # a broadcast dim of 1 takes the other's size
        ("bij,bjk->bik", [1, 4, 5], [1, 5, 6], 1 * 4 * 5 * 6),  # a dim of 1 on both sides counts once
    ],
)
def test_an_einsums_index_space_is_read_from_its_operands(equation, a, b, space):
    from sit_onnx.evaluate.energy import _einsum_macs

    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation=equation)
    values = {"a": np.zeros(a, np.float32), "b": np.zeros(b, np.float32)}
    assert _einsum_macs(node, values) == space
