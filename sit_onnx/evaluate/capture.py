"""Read intermediate tensors of a model by exposing them as extra graph outputs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from sit_onnx.evaluate.batching import run_all_rows
from sit_onnx.runtime import SessionSpec, make_session


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` whose outputs also include `names` (types left for onnxruntime to infer)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    copy.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in present)
    return copy


def capture(
    model: onnx.ModelProto,
    names: list[str],
    feeds: dict[str, np.ndarray],
    spec: SessionSpec = SessionSpec(verify_kernels=False),
) -> dict[str, np.ndarray]:
    """Values of the named tensors on `feeds`, plus the model's own outputs (a model of fixed batch
    run a batch at a time)."""
    session = make_session(with_outputs(model, names), spec)
    return run_all_rows(session, feeds, "model")
