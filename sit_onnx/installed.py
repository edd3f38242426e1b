"""Files that `pip install` puts inside the package (the custom-op library, the bundled model).

A regular install has them beside the sources; an editable install keeps them in
site-packages while the sources stay in the checkout, so the package metadata is asked too.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def find_installed(relative: str) -> Path | None:
    """`relative` (e.g. 'bundled/vit_digits.onnx') inside the installed package, or None."""
    here = PACKAGE_DIR / relative
    if here.is_file():
        return here
    try:
        from importlib.metadata import PackageNotFoundError, files

        wanted = "sit_onnx/" + relative
        for entry in files("sit-onnx") or []:
            if str(entry).replace("\\", "/").endswith(wanted):
                path = Path(entry.locate()).resolve()
                if path.is_file():
                    return path
    except PackageNotFoundError:
        pass
    return None
