"""A tensor's element type where onnx's inference left it unknown.

onnx's shape inference stops at ops it has no schema for, such as those onnxruntime's optimizer
writes (SkipLayerNormalization, com.microsoft Gelu, QuickGelu, Attention): every tensor after the
first of them is untyped. Most ops in a Transformer keep the type of their floating inputs, so the
type is found by walking up through such ops to a typed input (a weight, the graph input) or a
Cast, which names it.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper

# Ops whose output has the type of their floating inputs (integer ones, such as Gather's indices
# or Where's condition, are passed over), in the default domain and com.microsoft's.
KEEPS_TYPE = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Sqrt", "Erf", "Tanh", "Sigmoid", "Relu",
        "MatMul", "Gemm", "Conv", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice",
        "Concat", "Split", "Gather", "Expand", "Tile", "Identity", "Where", "Dropout", "Softmax",
        "ReduceMean", "ReduceSum", "ReduceMax", "LayerNormalization", "BatchNormalization",
        "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
        "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd", "Attention", "MultiHeadAttention",
        "GroupQueryAttention", "RotaryEmbedding",
    }
)  # fmt: skip
# Where an op's other inputs are not its values (Where's condition, Gather's indices, a Reshape's
# shape, a Slice's bounds), the inputs that are: only those are walked up. A mask's Cast to bool
# above Where's condition had named a softmax's logits bool.
VALUE_INPUTS = {
    "Where": (1, 2),
    "Attention": (0, 1, 2),  # not mask_index, past_sequence_length
    "MultiHeadAttention": (0, 1, 2, 3),  # not key_padding_mask
    "GroupQueryAttention": (0, 1, 2),  # not seqlens_k, total_sequence_length
} | dict.fromkeys(
    ("Gather", "Reshape", "Expand", "Tile", "Slice", "Squeeze", "Unsqueeze", "Split", "Dropout", "ReduceMean",
     "ReduceSum", "ReduceMax", "RotaryEmbedding"), (0,)
)  # fmt: skip
MAX_NODES = 32  # a weight or a Cast is a node or two above any activation or softmax


def known_dtype(tensor: gs.Tensor):
    """The tensor's type as onnx-graphsurgeon holds it (a numpy dtype, or the ONNX enum for types
    numpy lacks, such as bfloat16), or None where it is unknown."""
    dtype = tensor.dtype
    return None if dtype is None or (isinstance(dtype, int) and dtype == TensorProto.UNDEFINED) else dtype


def _floating(dtype) -> bool:
    if isinstance(dtype, int):
        return dtype == TensorProto.BFLOAT16
    return np.issubdtype(np.dtype(dtype), np.floating)


def _cast_dtype(to: int):
    """A Cast's `to` as traced_dtype gives types; None for a number that names no type (0, -100:
    onnx's checker lets a Cast say so, onnxruntime refuses the model later)."""
    if to == TensorProto.BFLOAT16:
        return to
    try:
        return helper.tensor_dtype_to_np_dtype(to)
    except KeyError:
        return None


def traced_dtype(tensor: gs.Tensor):
    """The tensor's own type, else the first floating type found walking up through ops that keep
    their inputs' type, through the inputs that carry values (breadth first, at most MAX_NODES nodes);
    a Cast gives its `to`. None if nothing says."""
    own = known_dtype(tensor)
    if own is not None:
        return own
    queue, seen = deque(tensor.inputs[:1]), set()
    while queue and len(seen) < MAX_NODES:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op == "Cast" and "to" in node.attrs:
            return _cast_dtype(int(node.attrs["to"]))
        if node.op not in KEEPS_TYPE:
            continue
        values = [node.inputs[i] for i in VALUE_INPUTS.get(node.op, range(len(node.inputs))) if i < len(node.inputs)]
        for source in values:
            dtype = known_dtype(source)
            if dtype is not None and _floating(dtype):
                return dtype
        queue.extend(source.inputs[0] for source in values if source.inputs)
    return None
