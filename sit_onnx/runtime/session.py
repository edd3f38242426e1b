"""One place that builds onnxruntime sessions: registers the library, picks providers, and checks
that the spiking ops run on the kernels, not on their (much slower) function bodies.

The check is a probe: a tiny model holding every spiking op in float32 and float16, built once
per library and providers, whose placed graph must keep all of them. It costs milliseconds, not a
second serialisation of the user's model; `SessionSpec(verify_placement=True)` (`run
--verify-kernels`) also checks the user's model itself, node by node.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from sit_onnx.domain import DOMAIN, DOMAIN_VERSION, SPIKING_ACTIVATION, SPIKING_EXP, SPIKING_NORM, SPIKING_SOFTMAX
from sit_onnx.errors import SitOnnxError, first_line
from sit_onnx.runtime.library import get_library_path, library_available
from sit_onnx.runtime.op_contract import check_contract
from sit_onnx.runtime.op_libraries import (
    EXTENSIONS_DOMAIN,
    extensions_library,
    op_libraries,
    unknown_op,
    unknown_op_hint,
)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
MIN_ORT = (1, 21)  # the kernels use C API 21
# What onnxruntime raises when it cannot build a session (a kernel refusing its attributes or
# SIT_ONNX_CPU_ISA raises RuntimeException): a user's problem, reported in one line.
_STATE = ort.capi.onnxruntime_pybind11_state
SESSION_ERRORS = (RuntimeError, OSError, ValueError) + tuple(
    error for error in vars(_STATE).values() if isinstance(error, type) and issubclass(error, Exception)
)


@dataclass(frozen=True)
class SessionSpec:
    """provider: 'auto' (cuda when available, else cpu), 'cpu' or 'cuda'.
    use_library: True (required), False (function fallback only) or None (when built).
    verify_kernels: probe that the library's kernels take the spiking ops (cheap).
    verify_placement: also check every spiking op of this model landed on a kernel (saves the
    optimised model once: costs about a serialisation of it)."""

    provider: str = "auto"
    use_library: bool | None = None
    threads: int = 0
    verify_kernels: bool = True
    verify_placement: bool = False

    def library_used(self) -> bool:
        return library_available() if self.use_library is None else self.use_library


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


def runtime_path(spec: SessionSpec) -> str:
    """Which code runs the spiking ops under `spec`, in words (what `run` prints)."""
    if spec.library_used():
        return f"sit-onnx kernels ({get_library_path()})"
    return "function fallback (standard onnxruntime ops; the sit-onnx library is not used)"


def _check_onnxruntime() -> None:
    version = tuple(int(p) for p in ort.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_ORT:
        raise SitOnnxError(
            f"onnxruntime {ort.__version__} is too old for the sit-onnx kernels (needs >= 1.21); "
            "upgrade it, or run with --no-library"
        )


def _options(spec: SessionSpec, library: bool, extra: tuple[str, ...] = ()) -> ort.SessionOptions:
    """Options registering our library (when `library`), then the other custom-op libraries given
    for this invocation and `extra`."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions, reported once in our words
    if spec.threads:
        options.intra_op_num_threads = spec.threads
    if library:
        _check_onnxruntime()
        try:
            options.register_custom_ops_library(get_library_path())
        except SESSION_ERRORS as exc:
            raise SitOnnxError(f"{get_library_path()}: not a usable sit-onnx library ({first_line(exc)})") from None
    for path in [*op_libraries(), *extra]:  # each once (op_libraries, _create): onnxruntime refuses a second
        try:
            options.register_custom_ops_library(path)
        except SESSION_ERRORS as exc:
            raise SitOnnxError(f"{path}: not a loadable custom-op library ({first_line(exc)})") from None
    return options


def _create(source, options_with: Callable, providers: list[str], label: str) -> ort.InferenceSession:
    """A session with `options_with(extra libraries)`; where onnxruntime knows no op of
    onnxruntime-extensions and that package is installed, again with its library."""
    try:
        return ort.InferenceSession(source, options_with(()), providers=providers)
    except SESSION_ERRORS as exc:
        failure = exc
    missing = unknown_op(str(failure))
    extensions = extensions_library() if missing and missing[0] == EXTENSIONS_DOMAIN else None
    if extensions and extensions not in op_libraries():
        try:
            return ort.InferenceSession(source, options_with((extensions,)), providers=providers)
        except SESSION_ERRORS as exc:
            failure, missing = exc, unknown_op(str(exc))
    if isinstance(source, str):
        _diagnose_file(source)  # says, in our words, what is wrong with the file, if anything
    hint = f"; {unknown_op_hint(*missing)}" if missing else ""
    raise SitOnnxError(f"{label}: onnxruntime cannot load the model: {first_line(failure)}{hint}") from None


def _diagnose_file(path: str) -> None:
    """Raise the loader's one-line error for a file onnxruntime refused (not ONNX, truncated, bad
    external data); return quietly when the file itself is sound."""
    from sit_onnx.graph.load import load_model_and_files  # read only after a failure: no cost otherwise

    load_model_and_files(path)


def _check_contract(model: str | os.PathLike | onnx.ModelProto, label: str) -> None:
    """Without the library the function bodies run, and they refuse a bad attribute only by a failing
    Reshape: name it as the kernels would (op_contract.py)."""
    try:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    except Exception:  # noqa: BLE001 - unreadable: onnxruntime says why when it tries
        return
    check_contract(proto, label)


def _placed_spiking_nodes(source, spec: SessionSpec, providers: list[str], label: str) -> tuple[int, int]:
    """(spiking ops in the model, spiking ops left after onnxruntime placed it): fewer after means
    some ran as their inlined function bodies."""
    with tempfile.TemporaryDirectory() as scratch:
        optimized = Path(scratch) / "placed.onnx"

        def options_with(extra: tuple[str, ...]) -> ort.SessionOptions:
            options = _options(spec, True, extra)
            options.optimized_model_filepath = str(optimized)
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "placed.data")
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
            return options

        _create(
            source.SerializeToString() if isinstance(source, onnx.ModelProto) else source,
            options_with,
            providers,
            label,
        )
        placed = spiking_node_count(onnx.load(str(optimized), load_external_data=False))
    model = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source), load_external_data=False)
    return spiking_node_count(model), placed


def probe_model() -> onnx.ModelProto:
    """Every spiking op in float32 and float16, on tiny inputs: what the kernel check places."""
    steps = {"thresholds": [0.0], "resets": [1.0], "weights": [1.0]}
    activation = {**steps, "low": -1.0, "high": 1.0, "tails": [0.0, 0.0, 1.0, 0.0]}
    kinds = (
        (SPIKING_EXP, steps),
        (SPIKING_NORM, {"axis": -1}),
        (SPIKING_SOFTMAX, steps),
        (SPIKING_ACTIVATION, activation),
    )
    nodes, inputs, outputs = [], [], []
    for elem, suffix in ((TensorProto.FLOAT, "f32"), (TensorProto.FLOAT16, "f16")):
        inputs.append(helper.make_tensor_value_info(f"x_{suffix}", elem, [2, 3]))
        for op, attrs in kinds:
            out = f"{op}_{suffix}"
            nodes.append(helper.make_node(op, [f"x_{suffix}"], [out], name=out, domain=DOMAIN, **attrs))
            outputs.append(helper.make_tensor_value_info(out, elem, [2, 3]))
    graph = helper.make_graph(nodes, "sit_onnx_probe", inputs, outputs)
    from sit_onnx.graph.functions import spiking_functions  # the bodies, so a fallback is possible

    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)]
    return helper.make_model(graph, opset_imports=opsets, functions=spiking_functions(1, 17, activation_steps=1))


@lru_cache(maxsize=8)
def _kernels_take_the_probe(library: str, providers: tuple[str, ...]) -> tuple[int, int]:
    """Placement depends on the library and the providers only: one probe per pair, per process."""
    return _placed_spiking_nodes(probe_model(), SessionSpec(), list(providers), "probe")


def check_kernels(providers: list[str]) -> None:
    """Refuse a library whose kernels do not take every spiking op (e.g. built for another domain
    version): they would silently run as function bodies, 2-4x slower."""
    expected, placed = _kernels_take_the_probe(get_library_path(), tuple(providers))
    if placed < expected:
        raise SitOnnxError(
            f"only {placed} of {expected} spiking op kinds run on the sit-onnx kernels; the rest would "
            "fall back to their function bodies (is the library built for this onnxruntime?)"
        )


def run_session(session: ort.InferenceSession, feeds: dict, label: str = "model") -> list:
    """`session.run`, with onnxruntime's run-time refusals (a shape the graph cannot take, a kernel
    that fails) as one line naming the model."""
    try:
        return [_stacked(value) for value in session.run(None, feeds)]
    except SESSION_ERRORS as exc:
        raise SitOnnxError(f"{label}: onnxruntime failed to run the model: {first_line(exc)}") from None


def _stacked(value):
    """A sequence output whose tensors share shape and type as one tensor along a new first axis,
    so it is judged as tensors are; anything else (maps, ragged tensors) as onnxruntime gave it."""
    if isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
        if len({(v.shape, v.dtype) for v in value}) == 1:
            return np.stack(value)
    return value


def run_by_name(session: ort.InferenceSession, feeds: dict, label: str = "model") -> dict:
    """`run_session`'s outputs by output name."""
    return dict(zip([o.name for o in session.get_outputs()], run_session(session, feeds, label)))


def _check_call(model, spec) -> None:
    """What the CLI's parsers check, for callers in Python: a bad field had reached onnxruntime
    (threads=-2 was taken, threads="2" a pybind TypeError, use_library="no" meant required)."""
    if not isinstance(model, (str, os.PathLike, onnx.ModelProto)):
        raise SitOnnxError(f"make_session takes a path or an onnx.ModelProto, got {type(model).__name__}")
    if not isinstance(spec, SessionSpec):
        raise SitOnnxError(f"spec must be a SessionSpec, got {type(spec).__name__}")
    if not isinstance(spec.threads, int) or isinstance(spec.threads, bool) or spec.threads < 0:
        raise SitOnnxError(f"SessionSpec.threads must be an int >= 0 (0: onnxruntime's choice), got {spec.threads!r}")
    flags = {"verify_kernels": spec.verify_kernels, "verify_placement": spec.verify_placement}
    for name, value in {"use_library": spec.use_library, **flags}.items():
        if not isinstance(value, bool) and not (value is None and name == "use_library"):
            raise SitOnnxError(f"SessionSpec.{name} must be True or False, got {value!r}")


def make_session(
    model: str | os.PathLike | onnx.ModelProto, spec: SessionSpec = SessionSpec(), label: str | None = None
) -> ort.InferenceSession:
    """A session for an original or converted model; with the library, spiking ops must land on kernels.
    Errors name the model by `label`, else by its path ("model" for one in memory)."""
    _check_call(model, spec)
    providers = resolve_providers(spec.provider)
    library = spec.library_used()
    if isinstance(model, onnx.ModelProto):
        source, label = model.SerializeToString(), label or "model"
    else:
        source, label = str(model), label or str(model)
        if not Path(model).exists():
            raise SitOnnxError(f"{model}: no such file")
        if not Path(model).is_file():
            raise SitOnnxError(f"{model}: not a file")
    if not library:
        _check_contract(model, label)
    if library and spec.verify_kernels:
        check_kernels(providers)
    if library and spec.verify_placement:
        expected, placed = _placed_spiking_nodes(model, spec, providers, label)
        if placed < expected:
            raise SitOnnxError(
                f"{label}: only {placed} of {expected} spiking ops run on the sit-onnx kernels; the rest "
                "fell back to their function bodies (is the library built for this onnxruntime?)"
            )
    return _create(source, lambda extra: _options(spec, library, extra), providers, label)
