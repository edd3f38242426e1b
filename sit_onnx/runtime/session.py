"""One place that builds onnxruntime sessions: registers the library, picks providers,
and checks that spiking ops run on the kernels, not on the slow function fallback."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

from sit_onnx.domain import DOMAIN
from sit_onnx.errors import SitOnnxError, first_line
from sit_onnx.runtime.library import get_library_path, library_available

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# What onnxruntime raises when it cannot build a session (a kernel refusing its attributes or
# SIT_ONNX_CPU_ISA raises RuntimeException): a user's problem, reported in one line.
_STATE = ort.capi.onnxruntime_pybind11_state
SESSION_ERRORS = (RuntimeError,) + tuple(
    error for error in vars(_STATE).values() if isinstance(error, type) and issubclass(error, Exception)
)


@dataclass(frozen=True)
class SessionSpec:
    """provider: 'auto' (cuda when available, else cpu), 'cpu' or 'cuda'.
    use_library: True (required), False (function fallback only) or None (when built)."""

    provider: str = "auto"
    use_library: bool | None = None
    threads: int = 0
    verify_kernels: bool = True


def resolve_providers(provider: str) -> list[str]:
    available = ort.get_available_providers()
    if provider == "auto":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if PROVIDERS["cuda"] in available else [PROVIDERS["cpu"]]
    if provider not in PROVIDERS:
        raise SitOnnxError(f"unknown provider {provider!r}; choose from auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[provider] not in available:
        raise SitOnnxError(
            f"provider {provider} is not available in this onnxruntime ({ort.__version__}, has "
            f"{', '.join(available)}); install onnxruntime-gpu for cuda"
        )
    return [PROVIDERS[provider]] + ([PROVIDERS["cpu"]] if provider != "cpu" else [])


def spiking_node_count(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node if n.domain == DOMAIN)


def make_session(model: str | os.PathLike | onnx.ModelProto, spec: SessionSpec = SessionSpec()) -> ort.InferenceSession:
    """A session for an original or converted model; with the library, spiking ops must land on kernels."""
    providers = resolve_providers(spec.provider)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions, reported once in our words
    if spec.threads:
        options.intra_op_num_threads = spec.threads
    use_library = library_available() if spec.use_library is None else spec.use_library
    if use_library:
        options.register_custom_ops_library(get_library_path())
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    proto = model if isinstance(model, onnx.ModelProto) else None
    expected = 0
    if use_library and spec.verify_kernels:
        proto = proto or onnx.load(str(model), load_external_data=False)
        expected = spiking_node_count(proto)
    with tempfile.TemporaryDirectory() as scratch:
        if expected:
            optimized = Path(scratch) / "placed.onnx"
            options.optimized_model_filepath = str(optimized)
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "placed.data")
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        try:
            session = ort.InferenceSession(source, options, providers=providers)
        except SESSION_ERRORS as exc:
            raise SitOnnxError(f"onnxruntime cannot load the model: {first_line(exc)}") from None
        if expected:
            placed = spiking_node_count(onnx.load(str(optimized), load_external_data=False))
            if placed < expected:
                raise SitOnnxError(
                    f"only {placed} of {expected} spiking ops run on the sit-onnx kernels; the rest "
                    "fell back to their function bodies (is the library built for this onnxruntime?)"
                )
    return session
