"""Running converted graphs: the custom-op library, providers and sessions."""

from sit_onnx.runtime.library import get_library_path
from sit_onnx.runtime.session import SessionSpec, make_session

__all__ = ["SessionSpec", "get_library_path", "make_session"]
