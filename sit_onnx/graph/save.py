"""Save a model atomically; models over 2 GB keep their weights in an external data file."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx

from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.load import PROTOBUF_LIMIT, uses_external_data, weights_bytes


def save_model(model: onnx.ModelProto, path: str | os.PathLike, external: bool = False) -> None:
    """Write into a temporary folder beside `path`, then rename into place (validate before).

    Weights go to `<name>.data` beside the model when asked, or when they would not
    fit in one protobuf (2 GB)."""
    path = Path(path)
    external = external or uses_external_data(model) or weights_bytes(model) > PROTOBUF_LIMIT - 2**26
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise SitOnnxError(f"{path.parent}: cannot write here ({exc.strerror})") from None
    try:
        staged = staging / path.name
        data_name = f"{path.name}.data"
        if external:
            onnx.save_model(
                model,
                str(staged),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            os.replace(staging / data_name, path.parent / data_name)
        else:
            onnx.save_model(model, str(staged))
        os.replace(staged, path)
    except OSError as exc:
        raise SitOnnxError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
