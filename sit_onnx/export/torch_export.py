"""Export a PyTorch module to ONNX: dynamic batch, named inputs/outputs, checked, written atomically."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import onnx

from sit_onnx.atomic import write_bytes_atomic
from sit_onnx.errors import SitOnnxError, first_line


def export_module(
    module,
    example_inputs,
    path: str | os.PathLike,
    opset: int = 17,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_batch: bool = True,
) -> onnx.ModelProto:
    """Trace `module` on `example_inputs` (a tensor or tuple) and save a checked ONNX model.

    Uses the TorchScript exporter, which keeps `torch.softmax` as one Softmax node at
    every opset; axis 0 of every input and output is named `batch` and left dynamic.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise SitOnnxError(f"export_module takes a torch.nn.Module, got {type(module).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise SitOnnxError(f"example_inputs must be a tensor or a tuple of them, got {type(example_inputs).__name__}")
    example_inputs = tuple(example_inputs)  # a list of tensors too
    input_names = input_names or [
        f"input{i}" if len(example_inputs) > 1 else "input" for i in range(len(example_inputs))
    ]
    module = module.eval()
    with torch.no_grad():
        try:
            outputs = module(*example_inputs)
        except Exception as exc:  # the module's own error on these inputs, before any export
            raise SitOnnxError(f"the module fails on example_inputs: {type(exc).__name__}: {first_line(exc)}") from None
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    output_names = output_names or (["output"] if count == 1 else [f"output{i}" for i in range(count)])
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                example_inputs,
                buffer,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                dynamo=False,
                do_constant_folding=True,
            )
        except Exception as exc:
            raise SitOnnxError(f"torch.onnx.export failed: {first_line(exc)}") from None
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model, full_check=True)
    write_bytes_atomic(Path(path), buffer.getvalue())
    return model
