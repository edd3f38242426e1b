"""onnxruntime's own tools as the benches and tests run them. Its transformer optimizer and its
quantizer run its symbolic shape inference, which saves sym_shape_infer_temp.onnx and the model's
weights as external data into the working directory whenever it cannot infer every shape, so they
run in a folder of their own; the quantizer logs a warning per tensor it cannot type, so it runs
quietly."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import onnx

FORMATS = ("qoperator", "qdq", "dynamic")


@contextlib.contextmanager
def working_in(folder: Path):
    """The working directory is `folder` for the block (contextlib.chdir from Python 3.11 on)."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def quietly():
    """No warnings, no log lines below errors, no progress on stdout."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


class Calibration:
    """onnxruntime's calibration reader: the given feeds, once."""

    def __init__(self, feeds: dict):
        self.feeds = iter([feeds])

    def get_next(self):
        return next(self.feeds, None)


def int8(source: Path, how: str, feeds: dict | None = None) -> onnx.ModelProto:
    """`source` through onnxruntime's quantizer, as people run it: static in QOperator format (every
    Softmax becomes com.microsoft QLinearSoftmax) or QDQ, calibrated on `feeds`; or dynamic (an
    Attention fused by the optimizer becomes QAttention)."""
    from onnxruntime import quantization

    out = source.with_name(f"{source.stem}.int8.onnx")
    with working_in(source.parent), quietly():
        if how == "dynamic":
            options = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # past ops that onnx's inference cannot type
            quantization.quantize_dynamic(str(source), str(out), extra_options=options)
        else:
            formats = {"qoperator": quantization.QuantFormat.QOperator, "qdq": quantization.QuantFormat.QDQ}
            quantization.quantize_static(str(source), str(out), Calibration(feeds), quant_format=formats[how])
    return onnx.load(str(out))
