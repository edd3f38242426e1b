"""The SIT-conversion pass: each softmax site becomes one SpikingSoftmax node (whose function body is
SpikingExp → SpikingNorm), or the explicit chain [Sigmoid] → [max-shift] → SpikingExp → SpikingNorm.

Built the onnx-graphsurgeon way: detach the site's nodes, insert the new chain
between the site's logits and its output tensor, and leave the dead nodes for the
one cleanup and sort the caller runs per pass.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper

from sit_onnx.domain import DOMAIN, SPIKING_EXP, SPIKING_NORM, SPIKING_SOFTMAX
from sit_onnx.graph.functions import CASTLIKE_OPSET
from sit_onnx.graph.sites import SoftmaxSite
from sit_onnx.graph.types import traced_dtype
from sit_onnx.graph.walk import walk_graphs
from sit_onnx.neurons.params import NeuronParams
from sit_onnx.neurons.softmax import SoftmaxOptions

AXES_INPUT_OPSET_REDUCE_MAX = 18
KERNEL_DTYPES = (np.float32, np.float16)


class NamePool:
    """Unique tensor and node names for what the pass inserts."""

    def __init__(self, graph: gs.Graph):
        self.taken = set()
        for sub in walk_graphs(graph):
            self.taken.update(sub.tensors().keys())
            self.taken.update(n.name for n in sub.nodes)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


def replace_site(
    site: SoftmaxSite, params: NeuronParams, options: SoftmaxOptions, fuse: bool, opset: int, names: NamePool
) -> list[str]:
    """Swap one site for one SpikingSoftmax node (`fuse`) or the spiking chain, converting as the
    neurons' own SoftmaxOptions say; return the op types inserted, in order."""
    graph, logits, output = site.graph, site.logits, site.output
    for node in site.nodes:
        node.inputs.clear()
        node.outputs.clear()
    base = site.name  # never empty: find_sites names every site apart
    dtype, onnx_type = _logits_type(logits)
    # float16 logits go through the chain's Sigmoid/max-shift in float32, as the fused kernel and
    # its function body do: an float16 Sub rounds x - max before SI-exp sees it, and onnxruntime
    # keeps or drops that rounding depending on which path (kernel or function body) runs.
    chain_in_half = dtype == np.float16 and not fuse and (options.shift or options.sigmoid)
    cast = dtype not in KERNEL_DTYPES or (dtype == np.float16 and opset < CASTLIKE_OPSET) or chain_in_half
    inserted: list[str] = []

    def add(op, inputs, attrs=None, domain=None, out=None):
        # What is inserted stays untyped: the annotations of new tensors are not written out
        # (convert keeps the source's own), and a type traced through them reaches the logits'.
        result = out or gs.Variable(names.fresh(f"{base}/{op}_out"))
        graph.nodes.append(
            gs.Node(
                op, names.fresh(f"{base}/sit_{op}"), attrs=attrs or {}, inputs=inputs, outputs=[result], domain=domain
            )
        )
        inserted.append(op)
        return result

    work = np.dtype(np.float32) if cast else dtype
    x = add("Cast", [logits], {"to": helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))}) if cast else logits
    norm_attrs = {"axis": portable_axis(site), "time_steps": int(options.time_steps)}
    if fuse:
        op, inputs = SPIKING_SOFTMAX, [x]
        flags = {"shift": int(options.shift), "sigmoid": int(options.sigmoid)}
        attrs = {**neuron_attributes(params), **norm_attrs, **flags}
    else:
        op, inputs, attrs = SPIKING_NORM, [_spiking_exp(x, site, params, options, opset, names, add, work)], norm_attrs
    if cast:
        add("Cast", [add(op, inputs, attrs, DOMAIN)], {"to": onnx_type}, out=output)
    else:
        add(op, inputs, attrs, DOMAIN, out=output)
    return inserted


def portable_axis(site: SoftmaxSite) -> int:
    """The site's axis, non-negative where the logits' rank is known: some runtimes mishandle a
    negative axis in GatherElements (onnx.reference does, which the fused op's body uses)."""
    axis = int(site.axis)
    shape = site.logits.shape
    if axis < 0 and shape is not None and len(shape) > 0 and -len(shape) <= axis:
        return axis + len(shape)
    return axis


def _logits_type(logits: gs.Tensor) -> tuple[np.dtype | None, int]:
    """The logits' numpy dtype (None for types numpy lacks, such as bfloat16, which
    onnx-graphsurgeon keeps as the ONNX enum) and their ONNX element type; where inference left
    them untyped, the type traced up the graph, else float32."""
    found = traced_dtype(logits)
    if found is None:
        return np.dtype(np.float32), TensorProto.FLOAT
    if isinstance(found, int):
        return None, found
    dtype = np.dtype(found)
    return dtype, helper.np_dtype_to_tensor_dtype(dtype)


def neuron_attributes(params: NeuronParams, member: int = 0) -> dict[str, list[float]]:
    """SpikingExp's attributes (and SpikingSoftmax's neuron) for one member of a parameter set."""
    return {
        "thresholds": [float(v) for v in params.thresholds],
        "resets": [float(v) for v in params.resets],
        "weights": [float(v) for v in params.neuron_weights(member)],
    }


def _spiking_exp(x, site, params, options, opset, names, add, work):
    """[Sigmoid] -> [ReduceMax, Sub] -> SpikingExp (or an ensemble of them, summed in order)."""
    base = site.name  # never empty: find_sites names every site apart
    if options.sigmoid:
        x = add("Sigmoid", [x])
    if options.shift:
        if opset >= AXES_INPUT_OPSET_REDUCE_MAX:
            axes = gs.Constant(names.fresh(f"{base}/shift_axes"), np.array([portable_axis(site)], dtype=np.int64))
            peak = add("ReduceMax", [x, axes], {"keepdims": 1})
        else:
            peak = add("ReduceMax", [x], {"axes": [portable_axis(site)], "keepdims": 1})
        x = add("Sub", [x, peak])
    if params.neurons == 1:
        return add(SPIKING_EXP, [x], neuron_attributes(params), DOMAIN)
    total = None
    for j, offset in enumerate(params.offsets):
        offset_const = gs.Constant(names.fresh(f"{base}/offset{j}"), np.array(offset, dtype=work))
        member = add(
            SPIKING_EXP,
            [add("Add", [x, offset_const])],
            neuron_attributes(params, j),
            DOMAIN,
        )
        total = member if total is None else add("Add", [total, member])
    return total
