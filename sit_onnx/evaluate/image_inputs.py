"""The image size a vision model takes, read from its graph, for inputs generated without --inputs.

Exporters declare `pixel_values` as [batch, num_channels, height, width], all dynamic, but the
model takes one channel count (its first Conv's) and a ViT one size: its position embeddings hold
one row per patch (plus class/distillation tokens), so 16x16 pixels fail at the embeddings' Add.
"""

from __future__ import annotations

import math

import onnx

from sit_onnx.graph.walk import attribute, constant_shapes

PASS_THROUGH = ("Cast", "Identity")  # ops between a pixel input and its Conv that keep its shape
EXTRA_TOKENS = (0, 1, 2)  # class token, distillation token
DOWNSTREAM_NODES = 40  # how far past the patch Conv to look for the position embeddings' Add


def _first_conv(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    """The Conv that reads input `name` as its data (through Casts), if any."""
    carried = {name}
    for node in graph.node:
        if node.op_type in PASS_THROUGH and node.input and node.input[0] in carried:
            carried.add(node.output[0])
        elif node.op_type == "Conv" and node.input and node.input[0] in carried:
            return node
    return None


def _tokens(table: list[int], width: int) -> int | None:
    """Rows of a position table ([1, T, D] or [T, D]) of the model's width, else None."""
    if len(table) == 3 and table[0] == 1 and table[2] == width:
        return table[1]
    if len(table) == 2 and table[1] == width:
        return table[0]
    return None


def _patches_per_side(graph: onnx.GraphProto, conv: onnx.NodeProto, width: int, constants: dict) -> int | None:
    """n, where the position embeddings added after the patch Conv hold n*n patch rows (plus
    class/distillation tokens): read from the first such Add within DOWNSTREAM_NODES nodes, its
    table given directly or gathered (CLIP's `position_embedding(position_ids)`)."""
    gathered = {
        node.output[0]: constants[node.input[0]]
        for node in graph.node
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in constants
    }
    reached, seen = {conv.output[0]}, 0
    for node in graph.node:
        if seen >= DOWNSTREAM_NODES:
            break
        if not reached & set(node.input):
            continue
        seen += 1
        reached.update(node.output)
        if node.op_type != "Add":
            continue
        for other in (name for name in node.input if name not in reached):
            rows = _tokens(constants.get(other) or gathered.get(other) or [], width)
            for extra in EXTRA_TOKENS if rows else ():
                side = math.isqrt(max(rows - extra, 0))
                if side > 0 and side * side == rows - extra:
                    return side
    return None


def image_dims(model: onnx.ModelProto) -> dict[str, dict[int, int]]:
    """For each rank-4 graph input read by a Conv: {1: channels} from the Conv's weights, and
    {2: height, 3: width} where a ViT's patch Conv (kernel = stride) and position embeddings say."""
    graph, constants = model.graph, constant_shapes(model)
    found: dict[str, dict[int, int]] = {}
    for spec in graph.input:
        if len(spec.type.tensor_type.shape.dim) != 4:
            continue
        conv = _first_conv(graph, spec.name)
        weights = constants.get(conv.input[1]) if conv is not None and len(conv.input) > 1 else None
        if not weights or len(weights) != 4:
            continue
        dims = {1: weights[1] * int(attribute(conv, "group", 1))}
        kernel = list(attribute(conv, "kernel_shape", weights[2:]))
        if list(attribute(conv, "strides", [1, 1])) == kernel and kernel != [1, 1]:
            side = _patches_per_side(graph, conv, weights[0], constants)
            if side:
                dims.update({2: side * kernel[0], 3: side * kernel[1]})
        found[spec.name] = dims
    return found
