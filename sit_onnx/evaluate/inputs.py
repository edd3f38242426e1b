"""Inputs for a session: from an .npz file (checked against the model) or generated."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sit_onnx.errors import SitOnnxError

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise SitOnnxError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise SitOnnxError(f"{path}: expected an .npz archive of named arrays, got a single array (.npy)")
        with data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise SitOnnxError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None


def check_feeds(session: ort.InferenceSession, arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Pick the session's inputs out of `arrays`, refusing missing names, wrong ranks, fixed dims or dtypes."""
    feeds = {}
    for spec in session.get_inputs():
        if spec.name not in arrays:
            raise SitOnnxError(
                f"{source}: lacks the model input {spec.name!r} (has {', '.join(sorted(arrays)) or 'nothing'})"
            )
        value = arrays[spec.name]
        want = ORT_TYPES.get(spec.type)
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
            if isinstance(dim, int) and dim != got:
                raise SitOnnxError(
                    f"{source}: {spec.name!r} has shape {list(value.shape)}, the model wants {spec.shape} (axis {axis})"
                )
        feeds[spec.name] = value
    return feeds


def generate_feeds(session: ort.InferenceSession, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs: N(0,1) floats, small non-negative integers; dynamic dims become `batch` then 1."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in session.get_inputs():
        dtype = ORT_TYPES.get(spec.type)
        if dtype is None:
            raise SitOnnxError(f"cannot generate input {spec.name!r} of type {spec.type}; pass --inputs")
        shape = [d if isinstance(d, int) else (batch if i == 0 else 1) for i, d in enumerate(spec.shape)]
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 4, shape).astype(dtype)
    return feeds
