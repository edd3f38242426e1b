"""Finding what `pip install` put inside the package (the bundled model, the custom-op library),
beside the sources or, in an editable install, through the package's file list; and saying so
when the library is not there."""

import importlib.metadata

import pytest

import sit_onnx.installed as installed
from sit_onnx.cli.demo import CHECKOUT_COPY, bundled_model
from sit_onnx.errors import SitOnnxError
from sit_onnx.runtime import library


class _Entry:
    """A file of a distribution's RECORD, as importlib.metadata lists it."""

    def __init__(self, recorded, real):
        self.recorded, self.real = recorded, real

    def __str__(self):
        return self.recorded

    def locate(self):
        return self.real


def test_a_file_beside_the_sources_is_found_there():
    assert installed.find_installed("cli/demo.py") == installed.PACKAGE_DIR / "cli" / "demo.py"


@pytest.mark.parametrize("separator", ["/", "\\"])
def test_an_editable_install_finds_it_through_the_file_list(tmp_path, monkeypatch, separator):
    """The sources in a checkout, the built files in site-packages: RECORD names them, with
    backslashes on Windows; another package's file of the same name is not taken."""
    monkeypatch.setattr(installed, "PACKAGE_DIR", tmp_path / "checkout" / "sit_onnx")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "model.onnx").write_bytes(b"x")
    (tmp_path / "site" / "other.onnx").write_bytes(b"y")
    entries = [
        _Entry(separator.join(["other_pkg", "bundled", "m.onnx"]), tmp_path / "site" / "other.onnx"),
        _Entry(separator.join(["sit_onnx", "bundled", "m.onnx"]), tmp_path / "site" / "model.onnx"),
    ]
    asked = []
    monkeypatch.setattr(importlib.metadata, "files", lambda name: asked.append(name) or entries)
    assert installed.find_installed("bundled/m.onnx") == tmp_path / "site" / "model.onnx"
    assert installed.find_installed("bundled/gone.onnx") is None
    assert asked == ["sit-onnx", "sit-onnx"]


def test_no_file_list_or_no_distribution_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(installed, "PACKAGE_DIR", tmp_path)
    monkeypatch.setattr(importlib.metadata, "files", lambda name: None)
    assert installed.find_installed("bundled/m.onnx") is None

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    assert installed.find_installed("bundled/m.onnx") is None


def test_the_demo_takes_the_installed_model_before_the_checkout_copy(tmp_path, monkeypatch):
    (tmp_path / "bundled").mkdir()
    (tmp_path / "bundled" / "vit_digits.onnx").write_bytes(b"x")
    monkeypatch.setattr(installed, "PACKAGE_DIR", tmp_path)
    assert bundled_model() == tmp_path / "bundled" / "vit_digits.onnx"
    monkeypatch.setattr(installed, "PACKAGE_DIR", tmp_path / "nothing")
    monkeypatch.setattr(importlib.metadata, "files", lambda name: [])
    assert bundled_model() == CHECKOUT_COPY


def test_a_library_not_built_says_how_to_build_it(monkeypatch):
    monkeypatch.delenv(library.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(library, "_installed_library", lambda: None)
    with pytest.raises(SitOnnxError) as error:
        library.get_library_path()
    assert str(error.value) == (
        "the sit-onnx custom-op library is not built (installed with SIT_ONNX_OPS=OFF, or without onnxruntime's "
        "headers): reinstall with SIT_ONNX_OPS=ON (needs a C++17 compiler and CMake), or set SIT_ONNX_OPS_LIBRARY"
    )
    assert library.library_available() is False
    monkeypatch.setenv(library.ENV_OVERRIDE, "/no/such/lib.so")
    with pytest.raises(SitOnnxError, match=r"^SIT_ONNX_OPS_LIBRARY=/no/such/lib.so: no such file"):
        library.library_available()
