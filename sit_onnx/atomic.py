"""Atomic writes: a temporary file (or folder) beside the target, then a rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sit_onnx.errors import SitOnnxError


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SitOnnxError(f"{path}: cannot write here ({exc.strerror})") from None
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SitOnnxError(f"{path}: cannot write ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def swap_in(staging: Path, target: Path) -> None:
    """Rename a staged folder into place; an existing one (--force) is moved aside first and
    removed only once the new one is in."""
    aside = None
    if target.exists() or target.is_symlink():
        aside = target.with_name(f".{target.name}.old")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(target, aside)
    os.replace(staging, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A hidden folder beside `target` to write into; renamed into place (replacing `target`) when
    the block ends without error, removed otherwise. An OSError becomes a one-line error."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise SitOnnxError(f"{target.parent}: cannot write here ({exc.strerror})") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp makes 0700
        swap_in(staging, target)
    except OSError as exc:
        raise SitOnnxError(f"{target}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
