"""SIT-conversion of a file: load → `rewrite_model` → save, with the output's files checked first.

Every file the output will write (the model, and `<name>.data` when it keeps external data) is an
output: if it exists it needs `force`, and if it is one of the files the input is read from
(the input model or any of its external data files) it is refused, `force` or not. Paths are
compared resolved, so the current directory and symbolic links do not matter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import onnx

from sit_onnx.errors import SitOnnxError, already_exists
from sit_onnx.graph.convert import RewriteOptions, check_options, rewrite_model
from sit_onnx.graph.load import load_model_and_files
from sit_onnx.graph.report import RewriteReport
from sit_onnx.graph.save import files_written, save_model
from sit_onnx.neurons.activation import ActivationParams
from sit_onnx.neurons.params import NeuronParams


def default_output(path: str | os.PathLike) -> Path:
    """`model.onnx` -> `model.sit.onnx` beside it."""
    path = Path(path)
    name = path.name[:-5] if path.name.endswith(".onnx") else path.name
    return path.with_name(f"{name}.sit.onnx")


def check_output_folder(output_path: Path) -> None:
    if not output_path.parent.is_dir():
        raise SitOnnxError(f"{output_path.parent}: output folder does not exist")
    if not os.access(output_path.parent, os.W_OK):
        raise SitOnnxError(f"{output_path.parent}: output folder is not writable")


def check_output_files(outputs: list[Path], inputs: list[Path], force: bool) -> None:
    """Refuse to write over the input's files; ask for `force` before replacing anything else
    (a dangling symbolic link counts as something)."""
    reading = set(inputs)
    for output in outputs:
        if output.resolve() in reading:
            what = "the input model" if output.resolve() == inputs[0] else "the input's external data file"
            raise SitOnnxError(f"{output}: refusing to overwrite {what}")
    for output in outputs:
        if (output.exists() or output.is_symlink()) and not force:
            raise already_exists(output)


def rewrite_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None = None,
    options: RewriteOptions = RewriteOptions(),
    force: bool = False,
    site_params: Callable[[onnx.ModelProto], Mapping[str, NeuronParams]] | None = None,
    activation_sets: Callable[[onnx.ModelProto], Mapping[str, ActivationParams]] | None = None,
) -> RewriteReport:
    """Convert a file; the output is written atomically and the input's files left untouched.
    `site_params`, given the loaded model, returns per-site sets (per-site calibration);
    `activation_sets` per-function activation sets (calibrated), called after it."""
    for path in (input_path, output_path or ""):  # no output: beside the input
        if not isinstance(path, (str, os.PathLike)):
            model = " (rewrite_model takes an onnx.ModelProto)" if isinstance(path, onnx.ModelProto) else ""
            raise SitOnnxError(f"rewrite_file takes paths, got {type(path).__name__}{model}")
    input_path = Path(input_path)
    output_path = Path(output_path) if output_path else default_output(input_path)
    check_output_folder(output_path)
    check_output_files([output_path], [input_path.resolve()], force)  # before the work; data file after
    check_options(options)
    model, input_files = load_model_and_files(input_path)
    external = len(input_files) > 1
    own = site_params(model) if site_params else None
    activations = activation_sets(model) if activation_sets else None
    new, report = rewrite_model(
        model, options, source=str(input_path), in_place=True, site_params=own, activation_sets=activations
    )
    check_output_files(files_written(new, output_path, external), input_files, force)
    save_model(new, output_path, external=external)
    report.output = str(output_path)
    return report
