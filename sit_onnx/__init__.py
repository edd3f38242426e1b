"""sit-onnx: SIT-conversion of Transformers in ONNX into spiking networks, and a runtime for them."""

__version__ = "0.1.0"

from sit_onnx.errors import SitOnnxError  # noqa: E402

__all__ = ["SitOnnxError", "__version__"]
