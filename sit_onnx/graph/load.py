"""Load an ONNX file with one-line errors for everything a user can get wrong."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from sit_onnx.errors import SitOnnxError, existing_file, first_line
from sit_onnx.graph.walk import graph_protos

PROTOBUF_LIMIT = 2**31 - 1


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1  # ONNX: a model importing no default domain is read as opset 1


def weights_bytes(model: onnx.ModelProto) -> int:
    """Size of the main graph's initializers, without serialising the whole model."""
    return sum(t.ByteSize() for t in model.graph.initializer)


def uses_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for g in graph_protos(model.graph) for t in g.initializer)


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read a model and its external data; refuse files that are not usable ONNX."""
    return load_model_and_files(path)[0]


def check_model_path(path: str | os.PathLike) -> Path:
    """A model path that names a file, or one line saying why not: what the commands check before
    they spend seconds on another model or a session."""
    return existing_file(path)


def read_model_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """The model's protobuf without its external data, or one line saying why it is not ONNX."""
    path = check_model_path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise SitOnnxError(f"{path}: not an ONNX model (the protobuf does not parse: {first_line(exc)})") from None
    except OSError as exc:
        raise SitOnnxError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not model.graph.node and not model.graph.output:
        raise SitOnnxError(f"{path}: not an ONNX model (no graph; is the file truncated or of another format?)")
    return model


def external_data_files(model: onnx.ModelProto, folder: Path) -> list[Path]:
    """The files that hold the model's external data, resolved (before they are read)."""
    files = set()
    for graph in graph_protos(model.graph):
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                location = next((e.value for e in tensor.external_data if e.key == "location"), "")
                files.add((folder / location).resolve())
    return sorted(files)


def load_model_and_files(path: str | os.PathLike) -> tuple[onnx.ModelProto, list[Path]]:
    """The model with its weights, and every file it was read from (the model first, then its
    external data files, resolved): a conversion must not write over any of them."""
    path = Path(path)
    model = read_model_proto(path)
    data_files = external_data_files(model, path.parent)
    if data_files:
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:  # OSError, ValueError, onnx's ValidationError for '..', absolute or linked paths
            raise SitOnnxError(f"{path}: its external data cannot be read ({first_line(exc)})") from None
    opset = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise SitOnnxError(
            f"{path}: uses opset {opset}, newer than this onnx ({onnx.__version__}) knows (up to {newest})"
        )
    return model, [path.resolve(), *data_files]
