"""Provider choice and the onnxruntime version check, against a pretended set of providers/versions."""

import onnxruntime as ort
import pytest

from sit_onnx.errors import SitOnnxError
from sit_onnx.runtime.session import _check_onnxruntime, resolve_providers

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


@pytest.fixture
def providers(monkeypatch):
    def pretend(*names):
        monkeypatch.setattr(ort, "get_available_providers", lambda: list(names))

    return pretend


def test_auto_takes_cuda_first_where_there_is_one(providers):
    providers(CUDA, CPU)
    assert resolve_providers("auto") == [CUDA, CPU]
    assert resolve_providers("cuda") == [CUDA, CPU]  # CPU behind it for the ops CUDA lacks
    assert resolve_providers("cpu") == [CPU]
    providers(CPU)
    assert resolve_providers("auto") == [CPU]


def test_a_missing_or_unknown_provider_is_named(providers, monkeypatch):
    providers("AzureExecutionProvider", CPU)
    monkeypatch.setattr(ort, "__version__", "1.23.2")
    with pytest.raises(SitOnnxError) as raised:
        resolve_providers("cuda")
    assert str(raised.value) == (
        "provider cuda is not available in this onnxruntime (1.23.2, has AzureExecutionProvider, "
        "CPUExecutionProvider); install onnxruntime-gpu for cuda"
    )
    with pytest.raises(SitOnnxError, match=r"^unknown provider 'tpu'; choose from auto, cpu, cuda$"):
        resolve_providers("tpu")


@pytest.mark.parametrize("version, ok", [("1.21.0", True), ("1.21", True), ("1.32.0.dev20260101", True),
                                         ("1.20.1", False), ("0.99.0", False)])  # fmt: skip
def test_onnxruntime_from_1_21(monkeypatch, version, ok):
    monkeypatch.setattr(ort, "__version__", version)
    if ok:
        _check_onnxruntime()
        return
    with pytest.raises(SitOnnxError) as raised:
        _check_onnxruntime()
    assert str(raised.value) == (
        f"onnxruntime {version} is too old for the sit-onnx kernels (needs >= 1.21); "
        "upgrade it, or run with --no-library"
    )
