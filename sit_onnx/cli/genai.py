"""`sit-onnx genai`: an onnxruntime-genai model folder around a converted model."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import deploy_options, emit_json, json_option


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--component",
    default="decoder",
    show_default=True,
    help='The key under genai_config.json\'s "model" whose file MODEL replaces (decoder, encoder, vision, ...).',
)
@deploy_options("genai")
@json_option
def genai(model, source, out, component, no_library, force, as_json):
    """Write OUT: the onnxruntime-genai model folder SOURCE (the one MODEL was converted from), with
    MODEL as its COMPONENT's model and the custom-op library beside it, named in genai_config.json."""
    from sit_onnx.deploy.genai import GenaiOptions, write_genai_folder
    from sit_onnx.runtime.library import LIBRARY_NAME

    write_genai_folder(model, source, out, GenaiOptions(component, not no_library), force=force)
    library = (out / LIBRARY_NAME).is_file()  # shipped only when the model holds spiking ops
    if as_json:
        emit_json({"model": str(model), "source": str(source), "folder": str(out), "component": component,
                   "library": library})  # fmt: skip
        return
    shipped = ", and the custom-op library" if library else ""
    click.echo(f"{out}: {source}'s genai folder with {model} as its {component}{shipped}")
