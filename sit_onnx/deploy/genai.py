"""An onnxruntime-genai model folder for a converted model, so that genai generates with it.

The source folder (genai_config.json, the tokenizer, the other models) is copied, the converted
model takes the place of one component's file (`model.decoder.filename` by default) and, when the
model holds `ai.sit` ops, the custom-op library goes beside it, named in that component's
`session_options.custom_ops_library` by a path inside the folder (genai loads libraries from
nowhere else). Staged beside its final place and renamed in: an error leaves no half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sit_onnx.atomic import staged_folder
from sit_onnx.deploy.triton import uses_spiking_ops
from sit_onnx.errors import SitOnnxError, already_exists
from sit_onnx.graph.load import external_data_files, load_model_and_files, read_model_proto
from sit_onnx.graph.save import save_model
from sit_onnx.runtime.op_contract import check_contract

CONFIG = "genai_config.json"


@dataclass(frozen=True)
class GenaiOptions:
    component: str = "decoder"  # the key under "model" whose filename the converted model replaces
    library: bool = True  # copy the custom-op library and name it (False: function fallback only)


def read_config(folder: Path, component: str) -> dict:
    """genai_config.json of `folder`, checked to name a file for `component`."""
    path = folder / CONFIG
    if not path.is_file():
        raise SitOnnxError(f"{folder}: no {CONFIG} here (not an onnxruntime-genai model folder)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SitOnnxError(f"{path}: not a JSON file ({exc})") from None
    sections = config.get("model") if isinstance(config, dict) else None
    sections = sections if isinstance(sections, dict) else {}
    named = [
        key for key, value in sections.items() if isinstance(value, dict) and isinstance(value.get("filename"), str)
    ]
    if component not in named:
        raise SitOnnxError(
            f"{path}: no model.{component}.filename (components with a model file: {', '.join(named) or 'none'})"
        )
    filename = sections[component]["filename"]
    if Path(filename).name != filename or filename.startswith("."):
        raise SitOnnxError(f"{path}: model.{component}.filename {filename!r} is not a plain file name")
    return config


def _source_files(folder: Path, filename: str) -> set[Path]:
    """The component's model file in the source folder and its external data files: replaced."""
    path = folder / filename
    if not path.is_file():
        return set()
    return {path.resolve(), *external_data_files(read_model_proto(path), folder)}


def write_genai_folder(model_path: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                       options: GenaiOptions = GenaiOptions(), force: bool = False) -> Path:  # fmt: skip
    """Write OUT: SOURCE's genai folder with the model at `model_path` as its component; returns OUT."""
    from sit_onnx.runtime.library import LIBRARY_NAME, get_library_path

    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise SitOnnxError(f"{source}: no such folder")
    config = read_config(source, options.component)
    if source.resolve() in (out.resolve(), *out.resolve().parents):  # copying a folder into itself
        raise SitOnnxError(f"{out}: the output folder must not be the source folder or inside it")
    if out.exists() and not force:
        raise already_exists(out, "replace")
    if not out.parent.is_dir():
        raise SitOnnxError(f"{out.parent}: no such folder")
    section = config["model"][options.component]
    replaced = _source_files(source, section["filename"])
    model, files = load_model_and_files(model_path)
    check_contract(model, str(model_path))  # genai would refuse it at load, with or without the library
    library = get_library_path() if options.library and uses_spiking_ops(model) else None
    if library:
        section.setdefault("session_options", {})["custom_ops_library"] = LIBRARY_NAME
    with staged_folder(out) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True, ignore=lambda d, names: [
            n for n in names if (Path(d) / n).resolve() in replaced or n in (CONFIG, LIBRARY_NAME)
        ])  # fmt: skip
        save_model(model, staging / section["filename"], external=len(files) > 1)
        (staging / CONFIG).write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
        if library:
            shutil.copyfile(library, staging / LIBRARY_NAME)
    return out
