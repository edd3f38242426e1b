"""Custom-op libraries besides ours that a model may need to run: onnxruntime-extensions' tokenizers
and audio/image decoders in end-to-end models, a vendor's kernels. The rewrite carries such ops
through untouched; every command that runs a model registers the libraries given with
`--op-library` or in SIT_ONNX_OP_LIBRARIES, and onnxruntime-extensions' own library where a model
needs one of its ops and the package is installed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from sit_onnx.errors import SitOnnxError

ENV = "SIT_ONNX_OP_LIBRARIES"
EXTENSIONS_DOMAIN = "ai.onnx.contrib"  # onnxruntime-extensions' ops
_GIVEN: ContextVar[tuple[str, ...]] = ContextVar("sit_onnx_op_libraries", default=())
# onnxruntime's words for an op no registered kernel or schema knows
_UNKNOWN_OP = re.compile(r"([\w.]+):(\w+)\(-?\d+\) is not a registered function/op")


@contextmanager
def given_libraries(paths: tuple[str, ...]) -> Iterator[None]:
    """Within the block, every session also registers `paths` (what one CLI invocation was given)."""
    token = _GIVEN.set(tuple(paths))
    try:
        yield
    finally:
        _GIVEN.reset(token)


def give_libraries(paths: tuple[str, ...]) -> None:
    """Register `paths` in every later session of this invocation (`--op-library`); the enclosing
    `given_libraries` block forgets them when the invocation ends."""
    _GIVEN.set(tuple(paths))


def op_libraries() -> tuple[str, ...]:
    """The libraries given for this invocation, then those of SIT_ONNX_OP_LIBRARIES (paths joined by
    the OS path separator), each once; a path that is no file is an error, not a later load failure."""
    from_env = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    paths = list(dict.fromkeys([*_GIVEN.get(), *from_env]))
    for path in paths:
        if not Path(path).is_file():
            source = "--op-library" if path in _GIVEN.get() else ENV
            raise SitOnnxError(f"{source} {path}: no such file")
    return tuple(paths)


def extensions_library() -> str | None:
    """onnxruntime-extensions' library, where the package is installed."""
    try:
        from onnxruntime_extensions import get_library_path
    except ImportError:
        return None
    return get_library_path()


def unknown_op(message: str) -> tuple[str, str] | None:
    """(domain, op) of the op onnxruntime could not place, from its load error; None for other errors."""
    found = _UNKNOWN_OP.search(message)
    return (found.group(1), found.group(2)) if found else None


def unknown_op_hint(domain: str, op: str) -> str:
    """What to do about a custom op no registered library implements."""
    if domain != EXTENSIONS_DOMAIN:
        return f"{domain}::{op} is a custom op: pass the library that implements it with --op-library"
    version = _extensions_version()
    if version is None:
        return (
            f"{domain}::{op} is an onnxruntime-extensions op: install onnxruntime-extensions "
            "(then its library is registered by itself) or pass it with --op-library"
        )
    return (
        f"{domain}::{op} is not in the installed onnxruntime-extensions {version}: a newer version may "
        "implement it, or pass a library that does with --op-library"
    )


def _extensions_version() -> str | None:
    """The installed onnxruntime-extensions' version, None where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-extensions")
    except PackageNotFoundError:
        return None
