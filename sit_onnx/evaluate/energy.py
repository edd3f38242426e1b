"""The paper's energy estimate (section 4.1.2): operations per Conv/MatMul/Gemm/Einsum layer times
45 nm energies, E_MAC = 4.6 pJ for the ANN and E_AC = 0.9 pJ for spike-driven accumulates.

Convention used here, per sample:
- ANN: every Conv/MatMul/Gemm/Einsum costs its MACs x E_MAC.
- Converted: a layer fed by a SpikingNorm output (directly or through ops that only move it:
  Reshape, Transpose, Cast, ...) is event-driven: MACs x (spikes per
  neuron) x E_AC, where a neuron's spikes are its rate-coded count, or, in the
  amplified mode, 1 if it emits at all. Other layers stay as in the ANN. The spiking
  neurons' own work is added: SI-exp 2 accumulates per spike (membrane and output),
  SI-norm one accumulate per input spike (N, or 1 when amplified).
- A layer fed by a SpikingActivation is event-driven for the inputs inside the set's range
  (MACs x spikes per neuron x E_AC; each spike's weight d(t) folds into the synapse, the
  bias into the layer's bias) and stays a MAC for the share in the tails, which pass an
  analog value; the neuron costs 2 accumulates per spike, as SI-exp. A gated one (attribute
  `gate`: x times the neuron) passes an analog product: the layer behind it stays MACs.
This convention ignores memory traffic, which dominates the energy of real hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from sit_onnx.domain import DOMAIN, SPIKING_ACTIVATION, SPIKING_EXP, SPIKING_NORM, SPIKING_SOFTMAX
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.branches import take_branches
from sit_onnx.evaluate.capture import capture
from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS
from sit_onnx.graph.walk import attribute, graph_protos
from sit_onnx.neurons import NeuronParams, SoftmaxOptions, si_exp
from sit_onnx.neurons.activation import ActivationParams, spiking_activation
from sit_onnx.neurons.softmax import prepare_input

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
CAVEAT = (
    "estimate by the paper's convention (45 nm, E_MAC 4.6 pJ, E_AC 0.9 pJ): arithmetic only, memory traffic ignored"
)
INTEGER_OPS = ("QLinearMatMul", "MatMulInteger", "QLinearConv", "ConvInteger")  # an int8 model's layers
# Einsum (jax2onnx's and torch.einsum's products; one of two operands or more) and ConvTranspose are
# products too: missed, they made an Einsum attention cost nothing
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", *INTEGER_OPS)
INT8_CAVEAT = "; int8 layers are counted at the same energies, as the paper has none for them"
# Ops that move spikes without touching them: a layer behind them is still fed by spikes (the
# Reshape before onnxruntime's fused Gemm, the Casts around float16 spiking ops, a Transpose; the
# quantization of an int8 model, where no spike is a zero point, which costs a layer nothing).
SPIKE_PRESERVING = (
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout", "Cast", "QuantizeLinear",
    "DequantizeLinear",
)  # fmt: skip
WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}


@dataclass
class LayerEnergy:
    name: str
    op: str
    macs: float
    ann_pj: float
    converted_pj: float
    spike_rate: float | None = None  # spikes per input neuron when event-driven
    analog_share: float = 0.0  # share of its inputs that arrive as values, not spikes (activation tails)


@dataclass
class EnergyReport:
    samples: int
    layers: list[LayerEnergy] = field(default_factory=list)
    neuron_ops: float = 0.0  # accumulates inside the spiking neurons, per sample
    ann_pj: float = 0.0
    converted_pj: float = 0.0
    caveat: str = CAVEAT

    @property
    def reduction(self) -> float:
        return 1 - self.converted_pj / self.ann_pj if self.ann_pj else 0.0


def _macs(node: onnx.NodeProto, values: dict[str, np.ndarray], batch: int) -> float:
    out = values[node.output[0]]
    if node.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger"):  # A is input 0 in each
        return out.size * values[node.input[0]].shape[-1] / batch
    if node.op_type == "Gemm":
        a = values[node.input[0]]
        inner = a.shape[0] if attribute(node, "transA", 0) else a.shape[1]
        return out.size * inner / batch
    if node.op_type == "Einsum":
        return _einsum_macs(node, values) / batch
    if node.op_type == "ConvTranspose":  # weight [C_in, C_out/group, k...]: each input scatters to those
        return values[node.input[0]].size * int(np.prod(values[node.input[1]].shape[1:])) / batch
    weight = values[node.input[WEIGHT_INPUT[node.op_type]]]  # out elements x (C_in/group) x kernel area
    return out.size * int(np.prod(weight.shape[1:])) / batch


def _einsum_macs(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> float:
    """A product's MACs: the size of its whole index space ("bhqd,bhkd->bhqk": b.h.q.k.d); one
    operand alone (a transpose, a sum) multiplies nothing."""
    terms = attribute(node, "equation").decode().replace(" ", "").split("->")[0].split(",")
    if len(terms) < 2:
        return 0.0
    sizes: dict[str, int] = {}
    for term, name in zip(terms, node.input):
        shape = values[name].shape
        named = term.replace("...", "")
        spread = len(shape) - len(named)  # the dims "..." stands for, numbered from the right
        letters = term.replace("...", "".join(f"<{spread - i}>" for i in range(spread)))
        for letter, size in zip(_indices(letters), shape):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return float(np.prod(list(sizes.values()), dtype=np.float64))


def _indices(term: str) -> list[str]:
    """An equation term's indices in order; "<n>" is one index (an ellipsis dim)."""
    found, i = [], 0
    while i < len(term):
        end = term.index(">", i) + 1 if term[i] == "<" else i + 1
        found.append(term[i:end])
        i = end
    return found


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name}


def _neuron(node: onnx.NodeProto, input_range=(-1, 1)) -> NeuronParams:
    """The SI-exp neuron a node carries (its range matters to SpikingActivation only)."""
    thresholds, resets, weights = (attribute(node, name) for name in ("thresholds", "resets", "weights"))
    return NeuronParams(thresholds, resets, weights, input_range)


def _si_exp_accumulates(node: onnx.NodeProto, x: np.ndarray) -> float:
    """SI-exp's work: two accumulates (membrane and output) per spike. SpikingSoftmax's neuron sees
    its input after the node's own [Sigmoid] and [max-shift]."""
    params = _neuron(node)
    x = x.astype(np.float32)
    if node.op_type == SPIKING_SOFTMAX:
        options = SoftmaxOptions(bool(attribute(node, "sigmoid", 0)), bool(attribute(node, "shift", 1)))
        x = prepare_input(x, attribute(node, "axis", -1), options)
    _, spikes = si_exp(x, params, return_spikes=True)
    return 2.0 * spikes.sum()


def _activation_activity(node: onnx.NodeProto, x: np.ndarray) -> tuple[float, float, float]:
    """(spikes per output neuron, share of neurons in the tails, accumulates of the neuron itself)."""
    neuron = _neuron(node, (attribute(node, "low"), attribute(node, "high")))
    # which function the set serves does not change its spikes: any name the record accepts will do
    params = ActivationParams("gelu", neuron, attribute(node, "bias", 0.0), attribute(node, "tails"))
    if not x.size:
        return 0.0, 0.0, 0.0
    x = x.astype(np.float32)
    _, spikes = spiking_activation(x, params, return_spikes=True)
    low, high = (np.float32(v) for v in neuron.input_range)
    tails = float(np.mean((x < low) | (x > high)))
    return float(spikes.sum() / x.size), tails, 2.0 * spikes.sum()


def _si_norm_activity(node: onnx.NodeProto, out: np.ndarray) -> tuple[float, float]:
    """(spikes per output neuron, accumulates): rate-coded with N input spikes, one accumulate per
    input spike and output spike; amplified (N = 0), one accumulate per neuron, rate = share firing."""
    steps = attribute(node, "time_steps", 0)
    if steps:
        counts = np.rint(out.astype(np.float64) * steps)
        return (float(counts.mean()) if counts.size else 0.0), float(steps * out.size + counts.sum())
    return (float(np.mean(out != 0)) if out.size else 0.0), float(out.size)


def _pass_rates_through(model: onnx.ModelProto, rates: dict[str, tuple[float, float]]) -> None:
    """A spiking output's rate also for what SPIKE_PRESERVING ops make of it (graph order is
    topological: one pass follows chains of them)."""
    for node in model.graph.node:
        if node.op_type in SPIKE_PRESERVING and node.domain in ("", "ai.onnx") and node.input[0] in rates:
            rates[node.output[0]] = rates[node.input[0]]


def _count_subgraph_layers(model: onnx.ModelProto, report: EnergyReport) -> None:
    """Layers inside subgraphs left after the taken If branches are inlined (Loop bodies, a generation
    op's decoder, an If the data does not fix) run where no value can be read out, so they are not
    counted: say so, and refuse where nothing else is left."""
    inside = sum(
        n.op_type in COMPUTE_OPS and n.domain in DEFAULT_DOMAINS
        for graph in list(graph_protos(model.graph))[1:]
        for n in graph.node
    )
    if not inside:
        return
    where = "subgraphs (Loop bodies, a generation op's decoder, an If whose condition the data does not fix)"
    if not report.layers:
        raise SitOnnxError(
            f"the model's {inside} Conv/MatMul/Gemm layers all lie in {where}, whose values cannot be read "
            "out: estimate the subgraph's model on its own (a decoder exported alone)"
        )
    report.caveat += f"; layers in {where}, not counted: {inside}"


def estimate_energy(
    original: onnx.ModelProto, converted: onnx.ModelProto | None, feeds: dict[str, np.ndarray]
) -> EnergyReport:
    """Energy per sample of the ANN and, when given, of the converted model, measured on `feeds`."""
    batch = next(iter(feeds.values())).shape[0]
    model, _ = take_branches(converted if converted is not None else original, feeds)  # a merged decoder's If
    nodes = [n for n in model.graph.node if n.op_type in COMPUTE_OPS or n.domain == DOMAIN]
    wanted = sorted({name for n in nodes for name in list(n.input) + list(n.output) if name})
    weights = _initializers(model)
    values = {**weights, **capture(model, [w for w in wanted if w not in weights], feeds)}
    rates: dict[str, tuple[float, float]] = {}  # (spikes per neuron, analog share) of a spiking output
    report = EnergyReport(samples=batch)
    for node in nodes:
        if node.domain != DOMAIN:
            continue
        if node.op_type == SPIKING_ACTIVATION:
            rate, analog, accumulates = _activation_activity(node, values[node.input[0]])
            if not attribute(node, "gate", 0):  # a gate's output, x times its spikes' sum, is analog
                rates[node.output[0]] = (rate, analog)
            report.neuron_ops += accumulates / batch
        if node.op_type in (SPIKING_EXP, SPIKING_SOFTMAX):
            report.neuron_ops += _si_exp_accumulates(node, values[node.input[0]]) / batch
        if node.op_type in (SPIKING_NORM, SPIKING_SOFTMAX):
            rate, accumulates = _si_norm_activity(node, values[node.output[0]])
            rates[node.output[0]] = (rate, 0.0)
            report.neuron_ops += accumulates / batch
    _pass_rates_through(model, rates)
    for node in nodes:
        if node.op_type not in COMPUTE_OPS or node.domain not in DEFAULT_DOMAINS:
            continue
        if node.op_type == "Einsum" and len(node.input) < 2:  # a transpose or a sum: no product
            continue
        macs = _macs(node, values, batch)
        rate, analog = next((rates[i] for i in node.input if i in rates), (None, 0.0))
        converted_pj = macs * E_MAC_PJ if rate is None else macs * (rate * E_AC_PJ + analog * E_MAC_PJ)
        report.layers.append(
            LayerEnergy(node.name or node.output[0], node.op_type, macs, macs * E_MAC_PJ, converted_pj, rate, analog)
        )
    if any(layer.op in INTEGER_OPS for layer in report.layers):
        report.caveat += INT8_CAVEAT
    _count_subgraph_layers(model, report)
    report.ann_pj = sum(layer.ann_pj for layer in report.layers)
    report.converted_pj = sum(layer.converted_pj for layer in report.layers) + report.neuron_ops * E_AC_PJ
    return report
