"""A Triton Inference Server model repository for a converted model (onnxruntime backend).

Layout: `REPO/<name>/config.pbtxt`, `REPO/<name>/1/model.onnx` (with its `.data` file when the
weights are external) and, when the model holds `ai.sit` ops, the custom-op library beside the
config, named in `model_operations { op_library_filename }` by the path the *server* sees
(`server_repo`, default the repository's own absolute path: set it to the mount point, e.g.
`/models`, when the server runs in a container). The whole model folder is staged beside its
final place and renamed in: an error leaves no half-written repository entry.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from sit_onnx.atomic import staged_folder
from sit_onnx.domain import DOMAIN
from sit_onnx.errors import SitOnnxError, already_exists
from sit_onnx.graph.load import load_model_and_files
from sit_onnx.graph.save import save_model
from sit_onnx.graph.walk import graph_protos
from sit_onnx.runtime.op_contract import check_contract

TRITON_TYPES = {
    TensorProto.BOOL: "TYPE_BOOL",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32",
    TensorProto.UINT64: "TYPE_UINT64",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.STRING: "TYPE_STRING",
    TensorProto.BFLOAT16: "TYPE_BF16",
}
DEVICES = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
INT32_MAX = 2**31 - 1  # Triton's model config holds max_batch_size and an instance count in int32


@dataclass(frozen=True)
class TritonOptions:
    name: str
    max_batch_size: int = 8  # 0: no batch dimension (dims are the full shapes)
    device: str = "cpu"
    instances: int = 1
    library: bool = True  # copy the custom-op library and name it (False: function fallback only)
    server_repo: str | None = None  # where the server sees the repository (default: its own path)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    dims: tuple[int, ...]


def _check_counts(options: TritonOptions) -> None:
    """What the CLI's ranges check, for a TritonOptions built in Python: a config Triton refuses
    (max_batch_size past int32) was written without a word."""
    for field, value, low in (("max_batch_size", options.max_batch_size, 0), ("instances", options.instances, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= INT32_MAX:
            raise SitOnnxError(f"TritonOptions.{field} must be an int in [{low}, {INT32_MAX}], got {value!r}")
    if options.device not in DEVICES:
        raise SitOnnxError(f"TritonOptions.device must be one of {', '.join(DEVICES)}, got {options.device!r}")


def check_name(name: str) -> str:
    """A model name is a folder name in the repository."""
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise SitOnnxError(f"--name {name!r}: a model name must be a plain folder name")
    return name


def tensor_specs(values, max_batch_size: int, what: str) -> list[TensorSpec]:
    """Triton's view of graph inputs or outputs: its data type, and the dims after the batch dim
    (-1 for a dynamic one) when batching."""
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type") or tensor.elem_type not in TRITON_TYPES:
            raise SitOnnxError(
                f"{what} {value.name!r}: Triton's onnxruntime backend takes tensors of numbers, bools or strings"
            )
        if not tensor.HasField("shape"):
            raise SitOnnxError(f"{what} {value.name!r} has no shape; Triton needs its rank")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if max_batch_size > 0:
            if not dims or dims[0] != -1:
                raise SitOnnxError(
                    f"{what} {value.name!r} has shape {dims or 'scalar'}: batching (--max-batch "
                    f"{max_batch_size}) needs a dynamic first dimension (use --max-batch 0)"
                )
            dims = dims[1:]
        if not dims:
            raise SitOnnxError(f"{what} {value.name!r} is a scalar; Triton needs at least one dimension")
        specs.append(TensorSpec(value.name, TRITON_TYPES[tensor.elem_type], tuple(dims)))
    return specs


def _quoted(text: str) -> str:
    return json.dumps(text)  # a protobuf text-format string: the same escapes for what names hold


def _tensors(field: str, specs: list[TensorSpec]) -> list[str]:
    lines = [f"{field} ["]
    for i, spec in enumerate(specs):  # list syntax: messages separated by commas
        lines += [
            "  {",
            f"    name: {_quoted(spec.name)}",
            f"    data_type: {spec.data_type}",
            f"    dims: [ {', '.join(str(d) for d in spec.dims)} ]",
            "  }" + ("," if i < len(specs) - 1 else ""),
        ]
    return lines + ["]"]


def triton_config(model: onnx.ModelProto, options: TritonOptions, library_files: list[str]) -> str:
    """The config.pbtxt text (protobuf text format of Triton's ModelConfig), naming each custom-op
    library the server loads by the path it sees."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    lines = [
        f"name: {_quoted(options.name)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {options.max_batch_size}",
        *_tensors("input", tensor_specs(inputs, options.max_batch_size, "input")),
        *_tensors("output", tensor_specs(model.graph.output, options.max_batch_size, "output")),
    ]
    if options.max_batch_size > 0:
        lines.append("dynamic_batching { }")
    lines += ["instance_group [", "  {", f"    count: {options.instances}", f"    kind: {DEVICES[options.device]}",
              "  }", "]"]  # fmt: skip
    if library_files:
        named = [f"  op_library_filename: {_quoted(path)}" for path in library_files]
        lines += ["model_operations {", *named, "}"]
    return "\n".join(lines) + "\n"


def uses_spiking_ops(model: onnx.ModelProto) -> bool:
    """Whether any node, in any subgraph or local function, is one of ours."""
    return _uses_domain(model, DOMAIN)


def write_repository(model_path: str | os.PathLike, repo: str | os.PathLike, options: TritonOptions,
                     force: bool = False) -> Path:  # fmt: skip
    """Write REPO/<name>/ for the model at `model_path`; returns that folder."""
    check_name(options.name)
    _check_counts(options)
    repo = Path(repo)
    if not repo.is_dir():
        raise SitOnnxError(f"{repo}: no such folder (create the model repository first)")
    target = repo / options.name
    if target.exists() and not force:
        raise already_exists(target, "replace")
    model, files = load_model_and_files(model_path)
    check_contract(model, str(model_path))  # the server would refuse it at load, with or without the library
    shipped = shipped_libraries(model, options.library)
    server_folder = Path(options.server_repo or repo.resolve()) / options.name
    config = triton_config(model, options, [str(server_folder / name) for name in shipped])
    with staged_folder(target) as staging:
        (staging / "1").mkdir()
        save_model(model, staging / "1" / "model.onnx", external=len(files) > 1)
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        for name, library in shipped.items():
            shutil.copyfile(library, staging / name)
    return target


def shipped_libraries(model: onnx.ModelProto, ours: bool) -> dict[str, str]:
    """The custom-op libraries the server needs, by the file name each is shipped under: ours where
    the model holds spiking ops (and `ours`), then those given with --op-library, then
    onnxruntime-extensions' where the model holds its ops and the package is installed."""
    from sit_onnx.runtime.library import LIBRARY_NAME, get_library_path
    from sit_onnx.runtime.op_libraries import EXTENSIONS_DOMAIN, extensions_library, op_libraries

    named = [(LIBRARY_NAME, get_library_path())] if ours and uses_spiking_ops(model) else []
    others = list(op_libraries())
    extensions = extensions_library() if _uses_domain(model, EXTENSIONS_DOMAIN) else None
    if extensions and extensions not in others:
        others.append(extensions)
    named += [(Path(path).name, path) for path in others]
    shipped: dict[str, str] = {}
    for name, path in named:
        if name in shipped:
            raise SitOnnxError(f"two custom-op libraries named {name} ({shipped[name]}, {path}): rename one")
        shipped[name] = path
    return shipped


def _uses_domain(model: onnx.ModelProto, domain: str) -> bool:
    graphs = list(graph_protos(model.graph))
    return any(n.domain == domain for g in graphs for n in g.node) or any(
        n.domain == domain for f in model.functions for n in f.node
    )
