"""The one exception type for user mistakes; the CLI prints it as one line and exits 1."""

from pathlib import Path


class SitOnnxError(Exception):
    """A problem with the user's input (file, model, option), not a bug in sit-onnx."""


def already_exists(path, verb: str = "overwrite") -> SitOnnxError:
    """The refusal to replace an existing output, naming both ways to allow it: the CLI's flag and
    the Python functions' argument."""
    return SitOnnxError(f"{path} exists (use --force, or force=True from Python, to {verb} it)")


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (library messages run to pages), or its type."""
    text = str(exc).strip()
    for prefix in ("[ONNXRuntimeError] : ",):
        text = text.split(prefix)[-1]
    return text.splitlines()[0] if text else type(exc).__name__


def existing_file(path) -> Path:
    """`path` as a Path when it names a file, else one line saying why not (missing, or a folder)."""
    path = Path(path)
    if not path.exists():
        raise SitOnnxError(f"{path}: no such file")
    if not path.is_file():
        raise SitOnnxError(f"{path}: not a file")
    return path
