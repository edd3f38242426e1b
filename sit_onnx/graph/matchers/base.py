"""What every matcher shares: the site record, the near-miss record, and constant values."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from sit_onnx.graph.site_roles import OTHER

SOFTMAX = "Softmax"
DECOMPOSED = "Exp-ReduceSum-Div"
DECOMPOSED_SHIFTED = "ReduceMax-Sub-Exp-ReduceSum-Div"
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class SoftmaxSite:
    """One softmax in the graph, with the nodes that make it up."""

    name: str
    graph: gs.Graph = field(repr=False)
    pattern: str
    axis: int | None
    logits: gs.Tensor = field(repr=False)
    output: gs.Tensor = field(repr=False)
    nodes: list = field(default_factory=list, repr=False)
    role: str = OTHER  # ATTENTION where its weights mix computed values (site_roles.py)


@dataclass(frozen=True)
class NearMiss:
    """An Exp that starts a softmax-like pattern the matcher did not accept, or a Softmax it did not
    take, and why (what `rewrite --explain` prints), so users can see what was skipped."""

    name: str
    graph: str
    reason: str
    op: str = "Exp"


@dataclass
class Match:
    """What a matcher says of a node it starts from: a site, or why there is none (reason None:
    nothing softmax-like, not worth a word)."""

    site: SoftmaxSite | None = None
    reason: str | None = None


def constant_value(tensor: gs.Tensor) -> np.ndarray | None:
    """A tensor's value when it is constant: an initializer, the output of a Constant node (as
    ONNX's own Softmax function body writes its axes), or such a value through CastLike (as ONNX's
    Gelu and Swish bodies write theirs: CastLike(Constant, x)). None otherwise."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    producer = tensor.inputs[0] if tensor.inputs else None
    if producer is None or (producer.domain or "") not in ("", "ai.onnx"):
        return None
    if producer.op == "CastLike" and producer.inputs:
        return constant_value(producer.inputs[0])
    if producer.op != "Constant":
        return None
    for key in ("value", "value_ints", "value_int", "value_floats", "value_float"):
        if key in producer.attrs:
            value = producer.attrs[key]
            if isinstance(value, str):  # an empty list, carried past graphsurgeon as a placeholder (opaque.py)
                return np.zeros(0, np.int64 if key == "value_ints" else np.float32)
            return np.asarray(value.values if isinstance(value, gs.Constant) else value)
    return None
