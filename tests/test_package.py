"""The package's top level: what users import, and the version from the installed metadata."""

from importlib.metadata import version

import pytest

import sit_onnx


def test_version_comes_from_the_installed_metadata():
    assert sit_onnx.__version__ == version("sit-onnx")


@pytest.mark.parametrize(
    "name", ["RewriteOptions", "rewrite_model", "rewrite_file", "get_library_path", "make_session"]
)
def test_top_level_names(name):
    assert callable(getattr(sit_onnx, name)) and name in dir(sit_onnx)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sit_onnx.nope  # noqa: B018


def test_top_level_rewrite_and_library(tmp_path):
    import onnx
    import onnxruntime as ort

    from tests.helpers import softmax_model

    onnx.save(softmax_model([2, 5], -1), str(tmp_path / "m.onnx"))
    report = sit_onnx.rewrite_file(tmp_path / "m.onnx", tmp_path / "m.sit.onnx", sit_onnx.RewriteOptions(steps=8))
    assert report.steps == 8 and len(report.converted) == 1
    options = ort.SessionOptions()
    options.register_custom_ops_library(sit_onnx.get_library_path())
    ort.InferenceSession(str(tmp_path / "m.sit.onnx"), options, providers=["CPUExecutionProvider"])
