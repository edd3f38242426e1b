"""PyTorch → ONNX with the defaults sit-onnx expects (the only package part that imports torch)."""

from sit_onnx.export.torch_export import export_module

__all__ = ["export_module"]
