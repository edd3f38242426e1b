"""sit-onnx: SIT-conversion of Transformers in ONNX into spiking networks, and a runtime for them.

The top level holds what users reach for (as onnxruntime-extensions does):

    import onnxruntime, sit_onnx
    report = sit_onnx.rewrite_file("model.onnx", "model.sit.onnx", sit_onnx.RewriteOptions(steps=12))
    options = onnxruntime.SessionOptions()
    options.register_custom_ops_library(sit_onnx.get_library_path())

Heavy modules load on first use, so `import sit_onnx` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from sit_onnx.errors import SitOnnxError

try:
    __version__ = version("sit-onnx")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "RewriteOptions": "sit_onnx.graph.convert",
    "rewrite_model": "sit_onnx.graph.convert",
    "rewrite_file": "sit_onnx.graph.convert_file",
    "get_library_path": "sit_onnx.runtime.library",
    "SessionSpec": "sit_onnx.runtime.session",
    "make_session": "sit_onnx.runtime.session",
}

__all__ = ["SitOnnxError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sit_onnx' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
