"""Where the custom-op library is: pass the path to `SessionOptions.register_custom_ops_library`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sit_onnx.errors import SitOnnxError
from sit_onnx.installed import find_installed

LIBRARY_NAME = "libsit_onnx_ops.so"
ENV_OVERRIDE = "SIT_ONNX_OPS_LIBRARY"


@lru_cache(maxsize=1)
def _installed_library() -> Path | None:
    return find_installed(LIBRARY_NAME)


def get_library_path() -> str:
    """The built `libsit_onnx_ops.so`; `SIT_ONNX_OPS_LIBRARY` overrides where it is looked for."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        if not Path(override).is_file():
            raise SitOnnxError(f"{ENV_OVERRIDE}={override}: no such file (unset it to use the installed library)")
        return override
    found = _installed_library()
    if found is None:
        raise SitOnnxError(
            "the sit-onnx custom-op library is not built (installed with SIT_ONNX_OPS=OFF, or without "
            "onnxruntime's headers): reinstall with SIT_ONNX_OPS=ON (needs a C++17 compiler and CMake), or set "
            + ENV_OVERRIDE
        )
    return str(found)


def library_available() -> bool:
    """Whether the library is built. A SIT_ONNX_OPS_LIBRARY that names no file is an error, not a
    quiet 'no' (the function fallback would run, 2-4x slower, with no word why)."""
    try:
        get_library_path()
    except SitOnnxError:
        if os.environ.get(ENV_OVERRIDE):
            raise
        return False
    return True
