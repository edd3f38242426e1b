"""Save a model atomically; models over 2 GB (or whose input had them) keep their weights in an
external data file `<name>.data` beside the model.

Everything is written into a hidden staging folder beside the output, then renamed into place,
so an interrupted save (an error, Ctrl-C or SIGTERM) leaves no partial file behind. Paths are
taken relative to the output's folder, never the current directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import onnx
from onnx import external_data_helper

from sit_onnx.atomic import umask
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.load import PROTOBUF_LIMIT, uses_external_data, weights_bytes
from sit_onnx.graph.walk import graph_protos

EXTERNAL_MIN_BYTES = 1024  # smaller tensors stay inside the protobuf, as onnx does by default


def needs_external_data(model: onnx.ModelProto, external: bool = False) -> bool:
    """Whether `save_model` will write a `.data` file for this model: asked for, or its input had
    one, or it is too large for one protobuf; and it holds a tensor large enough to move out (a
    model saved with every tiny tensor outside stays whole, rather than naming an empty file)."""
    wanted = external or uses_external_data(model) or weights_bytes(model) > PROTOBUF_LIMIT - 2**26
    return wanted and next(_movable_tensors(model), None) is not None


def _movable_tensors(model: onnx.ModelProto):
    """The initializers `save_model` moves to the data file: raw data of EXTERNAL_MIN_BYTES or more."""
    for graph in graph_protos(model.graph):
        for tensor in graph.initializer:
            if tensor.HasField("raw_data") and len(tensor.raw_data) >= EXTERNAL_MIN_BYTES:
                yield tensor


def data_file_for(path: str | os.PathLike) -> Path:
    """The external data file that `save_model` writes beside `path`."""
    path = Path(path)
    return path.with_name(f"{path.name}.data")


def files_written(model: onnx.ModelProto, path: str | os.PathLike, external: bool = False) -> list[Path]:
    """Every file `save_model(model, path, external)` creates or replaces."""
    path = Path(path)
    return [path, data_file_for(path)] if needs_external_data(model, external) else [path]


def save_model(model: onnx.ModelProto, path: str | os.PathLike, external: bool = False) -> None:
    """Write `model` (its weights may be moved out of it) to `path`, atomically."""
    path = Path(path)
    external = needs_external_data(model, external)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise SitOnnxError(f"{path.parent}: cannot write here ({exc.strerror})") from None
    try:
        with _sigterm_as_interrupt():
            _write_staged(model, staging, path.name, external)
            if external:
                os.replace(staging / data_file_for(path).name, data_file_for(path))
            os.replace(staging / path.name, path)
    except OSError as exc:
        raise SitOnnxError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except ValueError as exc:  # onnx refuses to serialise (e.g. a protobuf over 2 GB)
        raise SitOnnxError(f"{path}: cannot write the model ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_staged(model: onnx.ModelProto, staging: Path, name: str, external: bool) -> None:
    if external:
        # Mark and write the tensors ourselves: onnx's save_model(location=...) checks that
        # location against the current directory, not the folder it writes to.
        data_name = f"{name}.data"
        for tensor in list(_movable_tensors(model)):
            external_data_helper.set_external_data(tensor, data_name)
        external_data_helper.write_external_data_tensors(model, str(staging))
    onnx.save_model(model, str(staging / name))
    for written in staging.iterdir():  # onnx creates the data file 0600; give both the usual mode
        os.chmod(written, 0o666 & ~umask())


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM during a save raises KeyboardInterrupt, so the staging folder is removed on the way
    out (by default SIGTERM kills the process where it stands). Main thread only; elsewhere, as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
