"""`sit-onnx triton`: a Triton Inference Server model repository entry for a converted model."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import deploy_options, emit_json, json_option, op_library_option

# --server-repo only places the shipped libraries' paths in the config: with none shipped it changes
# nothing, which a user who set it should hear rather than trust a mount point that was never used
INT32_MAX = 2**31 - 1  # Triton keeps max_batch_size and counts in int32 (deploy.triton checks the Python API)
UNUSED_SERVER_REPO = "--server-repo changes nothing: no library is shipped, so the config names no path"


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("repo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Model name in the repository (default: MODEL's name without .sit.onnx).")
@click.option(
    "--max-batch",
    type=click.IntRange(0, INT32_MAX),
    default=8,
    show_default=True,
    help="Triton's max_batch_size, with dynamic batching (0: no batch dimension, full shapes).",
)
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--instances", type=click.IntRange(1, INT32_MAX), default=1, show_default=True, help="Model instances.")
@click.option(
    "--server-repo",
    default=None,
    metavar="PATH",
    help="Where the server sees REPO (e.g. /models in a container): the library path in the config.",
)
@deploy_options("the server")
@op_library_option
@json_option
def triton(model, repo, name, max_batch, device, instances, server_repo, no_library, force, as_json):
    """Write REPO/NAME/{config.pbtxt, 1/model.onnx, the libraries} for Triton's onnxruntime backend
    (onnxruntime >= 1.21 in the server): ours where the model holds spiking ops, and any other the
    model needs (--op-library; onnxruntime-extensions' where installed)."""
    from sit_onnx.deploy.triton import TritonOptions, write_repository
    from sit_onnx.runtime.library import LIBRARY_NAME

    name = model.name.removesuffix(".onnx").removesuffix(".sit") if name is None else name
    options = TritonOptions(name, max_batch, device, instances, not no_library, server_repo)
    target = write_repository(model, repo, options, force=force)
    library = (target / LIBRARY_NAME).is_file()  # shipped only when the model holds spiking ops
    others = sorted(p.name for p in target.iterdir() if p.is_file() and p.name not in (LIBRARY_NAME, "config.pbtxt"))
    notes = [UNUSED_SERVER_REPO] if server_repo and not library and not others else []
    if as_json:
        emit_json(
            {
                "model": str(model),
                "repository": str(repo),
                "name": name,
                "folder": str(target),
                "library": library,
                "other_libraries": others,
                "max_batch_size": max_batch,
                "device": device,
                "instances": instances,
                "notes": notes,
            }
        )
        return
    click.echo(
        f"{target}: config.pbtxt, 1/model.onnx{', the custom-op library' if library else ''}"
        f"{''.join(f', {other}' for other in others)} "
        f"(max_batch_size {max_batch}, {instances} x {device})"
    )
    for note in notes:
        click.echo(f"note: {note}")
