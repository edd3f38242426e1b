"""What a softmax site does in its model: attention (its weights mix computed values) or something
else (a classifier's probabilities, a router's gates, a spline's bins).

The paper converts the softmax of attention. Other softmaxes convert as well, but some feed
decisions the neuron's error moves: Piper's VITS voices normalise spline bins with softmax in
their duration predictor's flows, and converting those (6 of its 12 sites) changed the audio's
length by up to 4% on real phrases, while its 6 attention sites alone kept every length.
`rewrite --attention-only` converts the attention sites and reports the rest.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

ATTENTION, OTHER = "attention", "other"
# ops that carry the weights on unchanged in substance: type, layout, masking, scaling, quantisation
# (Mul as well: site_role follows it, and notes where it multiplies by computed values)
_CARRIERS = {
    "Cast",
    "CastLike",
    "Concat",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Expand",
    "Flatten",
    "Gather",
    "Identity",
    "Pad",
    "QuantizeLinear",
    "Reshape",
    "Slice",
    "Split",
    "Squeeze",
    "Transpose",
    "Unsqueeze",
    "Where",
}
# ops in which weights mix another operand: a product of the weights with values
_MIXERS = {
    "DynamicQuantizeMatMul",
    "Einsum",
    "FusedMatMul",
    "MatMul",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "QLinearMatMul",
}
_MAX_HOPS = 12


def site_role(output: gs.Tensor) -> str:
    """ATTENTION where the softmax output reaches, through carrier ops only, a product with an
    operand computed from the model's inputs (attention's values): a MatMul or Einsum, or an
    elementwise Mul by such values summed after (Keras' additive attention, `sum(w * v)`); OTHER
    otherwise."""
    frontier = [(output, False)]  # (tensor, multiplied by computed values on the way)
    for _ in range(_MAX_HOPS):  # a DAG: the frontier empties or the hops run out
        following = []
        for tensor, multiplied in frontier:
            for node in tensor.outputs:
                others = [t for t in node.inputs if t is not tensor and t.name]
                if node.op in _MIXERS and any(_computed(t) for t in others):
                    return ATTENTION
                if node.op == "ReduceSum" and multiplied:
                    return ATTENTION
                if node.op == "Mul":
                    following.extend((t, multiplied or any(_computed(o) for o in others)) for t in node.outputs)
                elif node.op in _CARRIERS:
                    following.extend((t, multiplied) for t in node.outputs)
        frontier = following
    return OTHER


def _computed(tensor: gs.Tensor) -> bool:
    """Not a weight: neither an initializer nor made from constants alone (a Constant node, or a
    dequantised initializer)."""
    if isinstance(tensor, gs.Constant):
        return False
    producers = tensor.inputs
    if not producers:
        return True  # a graph input, or an outer-scope value
    node = producers[0]
    if node.op == "Constant":
        return False
    if node.op == "DequantizeLinear":
        return any(_computed(t) for t in node.inputs[:1])
    return True
