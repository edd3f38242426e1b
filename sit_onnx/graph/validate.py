"""Shape inference and the full ONNX checker, run on every model before it is saved."""

from __future__ import annotations

import onnx

from sit_onnx.errors import SitOnnxError, first_line


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Best-effort shape/type inference so the rewrite knows dtypes; never fails the pass."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # a model onnx cannot infer is still rewritable; dtypes fall back to float32
        return model


def validate_model(model: onnx.ModelProto | str) -> None:
    """`check_model(full_check=True)`: types, shapes and functions; a path for models over 2 GB."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise SitOnnxError(f"the rewritten model fails onnx's checker: {first_line(exc)}") from None
