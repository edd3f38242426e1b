"""Where onnxruntime's tools write: its transformer optimizer and quantizer run onnxruntime's
symbolic shape inference, which saves sym_shape_infer_temp.onnx and the model's weights as
external data into the working directory whenever it cannot infer every shape."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def working_in(folder: Path):
    """The working directory is `folder` for the block (contextlib.chdir from Python 3.11 on)."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
