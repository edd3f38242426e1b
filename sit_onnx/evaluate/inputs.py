"""Inputs for a session: from an .npz file (checked against the model) or generated."""

from __future__ import annotations

import ast
import contextlib
import math
import operator
import os
import re
import zipfile
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from sit_onnx.errors import SitOnnxError, existing_file, first_line
from sit_onnx.evaluate.generation_inputs import is_generation, prompt_subgraph, set_controls
from sit_onnx.evaluate.image_inputs import image_dims
from sit_onnx.graph.walk import constant_shapes, graph_protos

T = TypeVar("T")

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = existing_file(path)
    try:
        with path.open("rb") as head:  # numpy takes anything else for a pickle and says so
            if not head.read(6).startswith((b"PK", b"\x93NUMPY")):
                raise SitOnnxError(f"{path}: not an .npz file (it does not start as a zip archive does)")
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise SitOnnxError(f"{path}: expected an .npz archive of named arrays, got a single array (.npy)")
        with data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        if "Object arrays" in str(exc):  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
            raise SitOnnxError(f"{path}: holds an object array (pickled Python objects), which is not read") from None
        raise SitOnnxError(f"{path}: not a readable .npz file ({type(exc).__name__}: {first_line(exc)})") from None


def tensor_kind(ort_type: str) -> str | None:
    """The tensor type an input takes ("tensor(float)"), an optional tensor's included (onnxruntime
    takes a tensor for it); None for a sequence or a map, which no array can give."""
    inner = ort_type.removeprefix("optional(").removesuffix(")") if ort_type.startswith("optional(") else ort_type
    return inner if inner.startswith("tensor(") else None


NOT_AN_ARRAY = "sit-onnx feeds a model tensors only, one array each"


def check_feeds(
    session: ort.InferenceSession, arrays: dict[str, np.ndarray], source: str, rows: int | None = None
) -> dict[str, np.ndarray]:
    """Pick the session's inputs out of `arrays`, refusing missing names, wrong ranks, fixed dims or
    dtypes. With `rows` (data run a batch at a time), an input's fixed first dim may differ from the
    data's rows: the batches take the model's size (batching.py)."""
    feeds = {}
    for spec in session.get_inputs():
        if spec.name not in arrays:
            raise SitOnnxError(
                f"{source}: lacks the model input {spec.name!r} (has {', '.join(sorted(arrays)) or 'nothing'})"
            )
        kind = tensor_kind(spec.type)
        if kind is None:  # a sequence or a map: ort reports its shape as []
            raise SitOnnxError(f"{source}: the model input {spec.name!r} is a {spec.type}; {NOT_AN_ARRAY}")
        value = arrays[spec.name]
        want = ORT_TYPES.get(kind)
        if want is not None and value.dtype != want:
            if np.issubdtype(value.dtype, np.floating) and np.issubdtype(want, np.floating):
                value = value.astype(want)
            else:
                raise SitOnnxError(f"{source}: {spec.name!r} is {value.dtype}, the model wants {np.dtype(want)}")
        if len(spec.shape) != value.ndim:
            raise SitOnnxError(
                f"{source}: {spec.name!r} has shape {list(value.shape)}, the model wants rank "
                f"{len(spec.shape)} ({spec.shape})"
            )
        for axis, (dim, got) in enumerate(zip(spec.shape, value.shape)):
            if isinstance(dim, int) and dim != got and not (axis == 0 and got == rows):
                raise SitOnnxError(
                    f"{source}: {spec.name!r} has shape {list(value.shape)}, the model wants {spec.shape} (axis {axis})"
                )
        feeds[spec.name] = value
    return feeds


# text for a string input (an end-to-end model tokenising in the graph): plain English sentences of
# a few lengths, drawn at random, so tokenizers and the attention behind them see real words
SENTENCES = (
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Spiking neural networks compute with binary events over time steps.",
    "Please send the report to the team before Friday afternoon.",
    "Rain is expected tomorrow in the north, with sunny spells in the south later in the week.",
    "Where is the nearest train station?",
    "The model converts every softmax in attention into spiking neurons and runs it in onnxruntime.",
    "Thank you!",
)


# dynamic dims past the batch: a softmax over a length-1 axis is exactly 1 and would hide every error
GENERATED_LENGTH = 16
LONGER_LENGTHS = (32, 64, 128, 224, 256, 384, 512)  # tried in turn where a model cannot take 16
INDEX_PASS_THROUGH = ("Cast", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose")  # values kept
INDEX_SELECTION = ("Gather", "GatherElements", "GatherND", "Slice", "Expand", "Tile")  # input 0's values, some of them
# com.microsoft's fused BERT embedding: which of its inputs indexes which of its tables
FUSED_EMBEDDING_TABLES = {"EmbedLayerNormalization": {0: 2, 1: 4, 8: 3}}
SMALL_CONSTANT = 1 << 16  # elements: larger constants are weights, never a one-hot's class list


def small_integer_constants(graphs: list[onnx.GraphProto]) -> dict[str, np.ndarray]:
    """The values of every small integer initializer and Constant (external data is never read)."""
    tensors = [t for graph in graphs for t in graph.initializer]
    for graph in graphs:
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                tensor = onnx.TensorProto()
                tensor.CopyFrom(node.attribute[0].t)
                tensor.name = node.output[0]
                tensors.append(tensor)
    values = {}
    for tensor in tensors:
        integer = tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        if integer and tensor.data_location != onnx.TensorProto.EXTERNAL and np.prod(tensor.dims) <= SMALL_CONSTANT:
            values[tensor.name] = onnx.numpy_helper.to_array(tensor)
    return values


def one_hot_width(node: onnx.NodeProto, source: dict[str, str], values: dict[str, np.ndarray]) -> tuple[str, int]:
    """(the ids' tensor, how many classes) where `node` one-hot encodes ids: `OneHot` with a constant
    depth, or `Equal` against a constant holding every class 0..n-1 (jax.nn.one_hot's form); else
    ("", 0). An `Equal` to one value (a padding id) is a test, not an encoding."""
    if node.op_type == "OneHot" and len(node.input) == 3 and node.input[1] in values:
        depth = values[node.input[1]]
        return (node.input[0], int(depth.ravel()[0])) if depth.size == 1 else ("", 0)
    if node.op_type != "Equal" or len(node.input) != 2:
        return "", 0
    ids, classes = node.input if node.input[0] in source else node.input[::-1]
    labels = np.unique(values.get(classes, np.empty(0)))
    if ids in source and labels.size >= 2 and np.array_equal(labels, np.arange(labels.size)):
        return ids, labels.size
    return "", 0


def index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """For each integer graph input that indexes a constant table (an embedding's Gather, through
    Casts, or the fused EmbedLayerNormalization) or is one-hot encoded (`OneHot`, `Equal` to the
    classes), in the main graph or an If/Loop body (a merged decoder's): the table's size, so
    generated ids are valid. Ids keep their source through ops that only move or pick values."""
    graphs = list(graph_protos(model.graph))  # the main graph first, so its names reach the bodies
    tables = constant_shapes(model)
    values = small_integer_constants(graphs)
    source = {i.name: i.name for i in model.graph.input}  # tensor -> the graph input it carries unchanged
    bounds: dict[str, int] = {}

    def bound(tensor: str, size: int) -> None:
        if tensor in source and size > 0:
            name = source[tensor]
            bounds[name] = min(bounds.get(name, size), size)

    def table_rows(table: str, axis: int = 0) -> int:
        dims = tables.get(table)
        return dims[axis] if dims and -len(dims) <= axis < len(dims) else 0

    for node in (node for graph in graphs for node in graph.node):  # the main graph's in order, first
        if is_generation(node):  # the prompt's ids index the vocabulary inside a subgraph
            prompt = prompt_subgraph(node)
            if node.input and node.input[0] in source and prompt is not None and prompt.input:
                source[prompt.input[0].name] = source[node.input[0]]
        if node.op_type in INDEX_PASS_THROUGH + INDEX_SELECTION and node.input and node.input[0] in source:
            source[node.output[0]] = source[node.input[0]]
        if node.op_type == "Gather" and len(node.input) == 2:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            bound(node.input[1], table_rows(node.input[0], axis))
        for index, table in FUSED_EMBEDDING_TABLES.get(node.op_type, {}).items():
            if len(node.input) > max(index, table):
                bound(node.input[index], table_rows(node.input[table]))
        bound(*one_hot_width(node, source, values))
    return bounds


DIM_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}


def _dim_expression(dim: str, sizes: dict[str, int], length: int) -> int | None:
    """The size of a dim named by arithmetic on other dims, as exporters write a decoder's
    `past_sequence_length + sequence_length` (optimum) or `s0 + s1`: its names sized as elsewhere
    (`length` where first met). None if the name is not such an expression."""
    try:
        tree = ast.parse(dim, mode="eval").body
    except SyntaxError:
        return None

    def value(node) -> int:
        if isinstance(node, ast.Name):
            return sizes.setdefault(node.id, length)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in DIM_ARITHMETIC:
            return DIM_ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        raise ValueError(dim)

    if not isinstance(tree, ast.BinOp):
        return None
    try:
        size = value(tree)
    except (ValueError, ZeroDivisionError):
        return None
    return size if size > 0 else None


def _shape(spec, batch: int, sizes: dict[str, int], read: dict[int, int], length: int) -> list[int]:
    """Fixed dims as they are; a named dim keeps one size across inputs; axis 0 is the batch; a dim
    named by arithmetic on other names is computed from their sizes; `read`: sizes the graph says
    (an image's channels and size)."""
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            shape.append(dim)
            continue
        size = batch if axis == 0 else length
        if axis in read:
            size = read[axis]
            if isinstance(dim, str) and dim:
                sizes.setdefault(dim, size)
        elif isinstance(dim, str) and dim:
            computed = _dim_expression(dim, sizes, length) if dim not in sizes else None
            size = computed if computed is not None else sizes.setdefault(dim, size)
        shape.append(size)
    return shape


def generate_feeds(
    session: ort.InferenceSession,
    batch: int = 1,
    seed: int = 0,
    model: onnx.ModelProto | None = None,
    length: int = GENERATED_LENGTH,
) -> dict[str, np.ndarray]:
    """Random inputs a Transformer takes: N(0,1) floats; ids below their embedding table's size
    (read from `model`, else small non-negative integers); inputs named *mask* all ones, so no row
    is masked out; dynamic dims `batch` on axis 0, an image's channels and size as `model` reads
    them, `length` elsewhere."""
    rng = np.random.default_rng(seed)
    bounds = index_bounds(model) if model is not None else {}
    images = image_dims(model) if model is not None else {}
    sizes: dict[str, int] = {}
    feeds = {}
    for spec in session.get_inputs():
        kind = tensor_kind(spec.type)
        dtype = ORT_TYPES.get(kind)
        if dtype is None and kind != "tensor(string)":
            where = "pass --inputs" if kind else NOT_AN_ARRAY
            raise SitOnnxError(f"cannot generate input {spec.name!r} of type {spec.type}; {where}")
        shape = _shape(spec, batch, sizes, images.get(spec.name, {}), length)
        _check_fits(spec.name, shape, np.dtype(dtype or object).itemsize, batch)
        if dtype is None:
            feeds[spec.name] = rng.choice(np.array(SENTENCES), shape)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif "mask" in spec.name.lower():
            feeds[spec.name] = np.ones(shape, dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            high = min(bounds.get(spec.name, 4), int(np.iinfo(dtype).max) + 1)
            feeds[spec.name] = rng.integers(0, high, shape).astype(dtype)
    _full_lengths(feeds)
    if model is not None:
        set_controls(model, feeds)
    return feeds


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name
        return None


def _check_fits(name: str, shape: list[int], itemsize: int, batch: int) -> None:
    """A generated input larger than the machine's memory is refused naming its shape and --batch:
    beyond what numpy can index (--batch 10**20) it had ended in numpy's "Maximum allowed
    dimension exceeded" as an internal error."""
    size = itemsize * math.prod(shape)  # Python ints: no overflow at --batch 10**20
    memory = _physical_memory() or np.iinfo(np.intp).max
    if size > memory:
        raise SitOnnxError(
            f"generated input {name!r} of shape {shape} would take {size / 2**30:.3g} GiB, more than this"
            f" machine's {memory / 2**30:.3g} GiB; lower --batch (now {batch})"
        )


_LENGTHS = re.compile(r"(^|_)(lengths?|lens?|seq_lens?)$")


def _full_lengths(feeds: dict[str, np.ndarray]) -> None:
    """An integer input of rank <= 1 named as lengths (`input_lengths`, `x_lens`: how much of each row
    is real) takes the full length of the other inputs, so none is cut to a few tokens by small
    random ids (a Piper voice read 0-3 of its 16 phonemes)."""
    lengths = [name for name, value in feeds.items() if _LENGTHS.search(name.lower())]
    longest = max((n for name, value in feeds.items() if name not in lengths for n in value.shape[1:]), default=0)
    for name in lengths:
        value = feeds[name]
        if longest and value.ndim <= 1 and np.issubdtype(value.dtype, np.integer):
            feeds[name] = np.full(value.shape, min(longest, int(np.iinfo(value.dtype).max)), value.dtype)


def run_generated(session, batch: int, model: onnx.ModelProto | None, run: Callable[[dict], T]) -> tuple[dict, T]:
    """Generated inputs the model runs on, and what `run` gave for them: dynamic lengths of
    GENERATED_LENGTH first; where the model fails on those, GENERATED_LENGTH and LONGER_LENGTHS in
    turn, probed at batch 1 (a traced Swin takes only the image size it was exported at; wav2vec2's
    convolutions need some 400 samples), each length that runs then tried at `batch`. A model that
    runs only at batch 1 (an export that fixed the batch inside, as a Reshape to [1, ...] does while
    its inputs say `batch`) is run at batch 1. If none runs, the first failure is the one reported,
    naming the inputs."""
    feeds = generate_feeds(session, batch, model=model)
    try:
        with said_of_generated(feeds, True):
            return feeds, run(feeds)
    except SitOnnxError as first:
        failed = first
    tried = [_shapes(feeds)]
    for length in (GENERATED_LENGTH, *LONGER_LENGTHS):
        probe = generate_feeds(session, 1, model=model, length=length)
        if _shapes(probe) in tried:
            if length == GENERATED_LENGTH:
                continue  # the batch is fixed or 1: the first run was this probe
            break  # no input has a length to change
        tried.append(_shapes(probe))
        try:
            probed = run(probe)
        except SitOnnxError:
            continue
        feeds = generate_feeds(session, batch, model=model, length=length)
        if _shapes(feeds) not in tried:
            try:
                return feeds, run(feeds)
            except SitOnnxError:
                pass
        return probe, probed  # it takes one row at a time
    raise failed


def _shapes(feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    return {name: value.shape for name, value in feeds.items()}


@contextlib.contextmanager
def said_of_generated(feeds: dict[str, np.ndarray], generated: bool):
    """A run that fails on generated inputs says which ones it was given, and how to give others:
    16 tokens or 16x16 pixels may be what a model cannot take."""
    try:
        yield
    except SitOnnxError as exc:
        if not generated:
            raise
        raise SitOnnxError(f"{exc} (on {describe_feeds(feeds)}; give the model's own with --inputs)") from None


def describe_feeds(feeds: dict[str, np.ndarray]) -> str:
    """One line saying what was generated, so a comparison on trivial inputs is visible."""
    parts = []
    for name, value in feeds.items():
        if value.dtype.kind in "iuf" and value.size and np.all(value == 1):
            what = "ones"
        elif value.dtype.kind in "iuf" and value.size == 1:
            what = f"= {value.item():g}"  # a count or a setting (a generation's max_length)
        elif np.issubdtype(value.dtype, np.integer) and value.size > 1 and np.all(value == value.flat[0]):
            what = f"all {int(value.flat[0])}"  # full lengths
        elif np.issubdtype(value.dtype, np.integer) and value.size:
            what = f"ids 0..{int(value.max())}"
        elif value.dtype.kind == "U":
            what = "English sentences"
        else:
            what = str(value.dtype)
        parts.append(f"{name} {list(value.shape)} {what}")
    return "generated inputs: " + ", ".join(parts)
