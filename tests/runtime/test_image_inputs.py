"""Generated images: the channel count of the Conv that reads them, and a ViT's size from its
position embeddings (optimum declares pixel_values [batch, num_channels, height, width], all
dynamic; 16 channels of 16x16 failed at the Conv, then at the embeddings' Add)."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.evaluate.image_inputs import image_dims
from sit_onnx.evaluate.inputs import GENERATED_LENGTH, generate_feeds

WIDTH = 8


def _vit(
    patch=4, side=3, extra=1, channels=3, group=1, gathered=False, cast=False, stride=None, table=True,
    kernel=None, omit=(), chain=0, bias=False,
):  # fmt: skip
    """Patch Conv -> [B, D, n, n] -> [B, n*n, D] -> class tokens prepended -> + position table.
    `omit`: Conv attributes left to their defaults; `chain`: Relus before the position Add;
    `bias`: an Add of a [D] vector first."""
    rng = np.random.default_rng(0)
    kh, kw = kernel or (patch, patch)
    weight = rng.normal(0, 0.1, (WIDTH, channels // group, kh, kw)).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([0, WIDTH, -1]), "flat")]
    x = "pixels"
    nodes = []
    if cast:
        nodes.append(helper.make_node("Cast", ["pixels"], ["cast"], to=TensorProto.FLOAT))
        x = "cast"
    step = [stride, stride] if stride else [kh, kw]
    attrs = {"kernel_shape": [kh, kw], "strides": step, "group": group}
    nodes += [
        helper.make_node("Conv", [x, "w"], ["patches"], **{k: v for k, v in attrs.items() if k not in omit}),
        helper.make_node("Reshape", ["patches", "flat"], ["flat_patches"]),
        helper.make_node("Transpose", ["flat_patches"], ["tokens"], perm=[0, 2, 1]),
    ]
    last = "tokens"
    for index in range(chain):
        nodes.append(helper.make_node("Relu", [last], [f"relu{index}"]))
        last = f"relu{index}"
    if bias:
        inits.append(numpy_helper.from_array(np.ones(WIDTH, np.float32), "bias"))
        nodes.append(helper.make_node("Add", [last, "bias"], ["biased"]))
        last = "biased"
    if extra:
        cls = np.zeros((1, extra, WIDTH), np.float32)
        inits += [numpy_helper.from_array(cls, "cls"), numpy_helper.from_array(np.array([1, 1, 1]), "ones")]
        nodes += [
            helper.make_node("Shape", [last], ["token_shape"], end=1),
            helper.make_node("Concat", ["token_shape", "ones"], ["tiled"], axis=0),
            helper.make_node("Slice", ["tiled", "one_zero", "three"], ["reps"]),
            helper.make_node("Tile", ["cls", "reps"], ["cls_batch"]),
            helper.make_node("Concat", ["cls_batch", last], ["with_cls"], axis=1),
        ]
        inits += [numpy_helper.from_array(np.array([0]), "one_zero"), numpy_helper.from_array(np.array([3]), "three")]
        last = "with_cls"
    rows = side * side + extra
    if table:
        positions = rng.normal(0, 0.1, (rows, WIDTH) if gathered else (1, rows, WIDTH)).astype(np.float32)
        inits.append(numpy_helper.from_array(positions, "positions"))
        if gathered:
            inits.append(numpy_helper.from_array(np.arange(rows).reshape(1, rows), "position_ids"))
            nodes.append(helper.make_node("Gather", ["positions", "position_ids"], ["position_rows"]))
        nodes.append(helper.make_node("Add", [last, "position_rows" if gathered else "positions"], ["y"]))
    else:
        nodes.append(helper.make_node("Relu", [last], ["y"]))
    graph = helper.make_graph(
        nodes,
        "vit",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", "num_channels", "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "build, dims",
    [
        ({}, {1: 3, 2: 12, 3: 12}),
        ({"extra": 0, "side": 5}, {1: 3, 2: 20, 3: 20}),  # no class token
        ({"extra": 2, "side": 2, "patch": 5}, {1: 3, 2: 10, 3: 10}),  # class + distillation tokens (DeiT)
        ({"gathered": True}, {1: 3, 2: 12, 3: 12}),  # CLIP: position_embedding(position_ids)
        ({"cast": True, "channels": 1}, {1: 1, 2: 12, 3: 12}),
        ({"channels": 6, "group": 2}, {1: 6, 2: 12, 3: 12}),  # grouped: weights hold channels / group
        ({"table": False}, {1: 3}),  # no position table: the channels only
        ({"stride": 2}, {1: 3}),  # not a patch Conv (stride below kernel): the channels only
        ({"extra": 2, "side": 1, "patch": 5}, {1: 3, 2: 5, 3: 5}),  # one patch and two tokens
        ({"kernel": (4, 2)}, {1: 3, 2: 12, 3: 6}),  # oblong patches
        ({"omit": ("group", "kernel_shape")}, {1: 3, 2: 12, 3: 12}),  # defaults: group 1, kernel from weights
        ({"omit": ("strides",)}, {1: 3}),  # stride 1: not a patch Conv
        ({"omit": ("strides",), "kernel": (2, 1)}, {1: 3}),  # stride 1 on both axes, whatever the kernel
        ({"omit": ("strides",), "kernel": (1, 2)}, {1: 3}),
        ({"patch": 1, "side": 4, "extra": 0}, {1: 3}),  # a 1x1 Conv does not patch
        ({"bias": True}, {1: 3, 2: 12, 3: 12}),  # a [D] vector added first is not the table
        ({"chain": 37, "extra": 0}, {1: 3, 2: 12, 3: 12}),  # the Add is the 40th node past the Conv
        ({"chain": 38, "extra": 0}, {1: 3}),  # the 41st: too far to be the embeddings' own
    ],
)
def test_channels_and_size_come_from_the_conv_and_position_table(build, dims):
    model = _vit(**build)
    assert image_dims(model) == {"pixels": dims}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = generate_feeds(session, batch=2, model=model)
    size = [dims.get(axis, GENERATED_LENGTH) for axis in (1, 2, 3)]
    assert list(feeds["pixels"].shape) == [2, *size]
    if 2 in dims or not build.get("table", True):  # (without a size read, 16x16 fits no position table)
        session.run(None, feeds)  # the size the graph says is one it takes


def test_inputs_a_conv_does_not_read_are_left_alone():
    model = _vit()
    model.graph.input.insert(0, helper.make_tensor_value_info("other", TensorProto.FLOAT, ["b", 3, "h", "w"]))
    model.graph.input.insert(0, helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["b", "s"]))
    assert set(image_dims(model)) == {"pixels"}  # inputs before it, of rank 2 or read by no Conv, skipped
    untabled = _vit()
    untabled.graph.initializer[0].dims[:] = [WIDTH, 3, 4]  # not 4-D weights: nothing to read
    assert image_dims(untabled) == {}


def test_a_table_of_another_width_or_no_square_is_not_taken():
    model = _vit()
    table = next(t for t in model.graph.initializer if t.name == "positions")
    table.CopyFrom(numpy_helper.from_array(np.zeros((1, 10, WIDTH + 1), np.float32), "positions"))
    assert image_dims(model) == {"pixels": {1: 3}}  # width 9 is not the Conv's 8
    table.CopyFrom(numpy_helper.from_array(np.zeros((1, 13, WIDTH), np.float32), "positions"))
    assert image_dims(model) == {"pixels": {1: 3}}  # 13, 12, 11 rows: no n*n patches
    table.CopyFrom(numpy_helper.from_array(np.zeros((2, 10, WIDTH), np.float32), "positions"))
    assert image_dims(model) == {"pixels": {1: 3}}  # [2, T, D]: one table per batch row is no position table


def test_the_bundled_vit_reads_its_own_size():
    bundled = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"
    assert image_dims(onnx.load(str(bundled))) == {"input": {1: 1, 2: 8, 3: 8}}


def test_a_read_size_is_shared_with_other_inputs_of_the_same_dim_name():
    model = _vit()
    model.graph.input.append(helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", "height"]))
    model.graph.output.append(helper.make_tensor_value_info("rows", TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert generate_feeds(session, batch=2, model=model)["rows"].shape == (2, 12)
