"""A comparison's noise floor: the converted model with every SpikingSoftmax put back as the exact
softmax, its weights rounded to float16.

Some models amplify any change of their attention: measured on an int8 flan-T5 titler (dynamic
quantisation after every layer), rounding one layer's attention weights to float16, a relative change
of 2^-11, moved its encoder output to cosine 0.985. Against such a model a conversion's FAILED says
more about the model than about the neuron; the floor says how far the reference moves when only
the precision of its attention weights changes, so a user can tell the two apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from sit_onnx.domain import DOMAIN, SPIKING_SOFTMAX
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.seeding import proto_session, seed_random_ops
from sit_onnx.graph.functions import CASTLIKE_OPSET
from sit_onnx.graph.load import default_opset, load_model
from sit_onnx.graph.walk import attribute, graph_protos

FLOOR_PRECISION = "float16"


def _exact_rounded(node: onnx.NodeProto, castlike: bool) -> list[onnx.NodeProto]:
    """Softmax over the node's axis, rounded to float16 and cast back to the input's type (float32
    below opset 15, where the rewrite feeds SpikingSoftmax float32)."""
    x, out = node.input[0], node.output[0]
    exact, rounded = f"{out}/floor_softmax", f"{out}/floor_float16"
    back = (
        helper.make_node("CastLike", [rounded, x], [out], name=f"{node.name}/floor_castlike")
        if castlike
        else helper.make_node("Cast", [rounded], [out], name=f"{node.name}/floor_cast_back", to=TensorProto.FLOAT)
    )
    return [
        helper.make_node("Softmax", [x], [exact], name=f"{node.name}/floor_softmax", axis=attribute(node, "axis", -1)),
        helper.make_node("Cast", [exact], [rounded], name=f"{node.name}/floor_round", to=TensorProto.FLOAT16),
        back,
    ]


def rounded_attention(candidate: onnx.ModelProto, label: str = "candidate") -> onnx.ModelProto:
    """A copy of a converted model whose SpikingSoftmax nodes compute the exact softmax of their input
    rounded to float16 (what the reference computes but for that rounding; an inserted --sigmoid and
    --time-steps are not kept). Refuses a model whose spiking ops are not all fused softmax sites:
    the chain's neurons and converted activations have no exact twin here."""
    floor = onnx.ModelProto()
    floor.CopyFrom(candidate)
    castlike = default_opset(floor) >= CASTLIKE_OPSET
    found = False
    for graph in graph_protos(floor.graph):
        nodes = []
        for node in graph.node:
            if node.domain != DOMAIN:
                nodes.append(node)
            elif node.op_type == SPIKING_SOFTMAX:
                nodes.extend(_exact_rounded(node, castlike))
                found = True
            else:
                raise SitOnnxError(
                    f"--noise-floor: {label} holds {node.op_type} ({node.name or 'unnamed'}); the floor puts back "
                    "fused SpikingSoftmax sites only (rewrite with the default --fuse and no --activations)"
                )
        del graph.node[:]
        graph.node.extend(nodes)
    if not found:
        raise SitOnnxError(
            f"--noise-floor: {label} holds no SpikingSoftmax node (is it a sit-onnx rewrite, written without --inline?)"
        )
    return floor


def floor_outputs(candidate: Path, provider: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The floor model's outputs on `feeds`, by output name, its random ops seeded as `compare` seeds
    the reference's and the candidate's."""
    from sit_onnx.evaluate.batching import run_all_rows
    from sit_onnx.runtime import SessionSpec

    floor = rounded_attention(load_model(candidate), str(candidate))
    seed_random_ops(floor)
    label = f"{candidate} (noise floor)"
    spec = SessionSpec(provider=provider, use_library=False)  # no spiking op is left to place
    return run_all_rows(proto_session(floor, spec, label), feeds, label)
