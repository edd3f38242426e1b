"""`sit-onnx run`: run a model (converted or not) on given or generated inputs."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from sit_onnx.cli.options import emit_json, json_option, library_option, provider_option, table


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@provider_option
@library_option
@click.option(
    "--inputs",
    "inputs_file",
    type=click.Path(path_type=Path),
    default=None,
    help="An .npz with one array per model input (default: random inputs).",
)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size of generated inputs.")
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True, help="Runs to time.")
@json_option
def run(model, provider, use_library, inputs_file, batch, repeat, as_json):
    """Run MODEL in onnxruntime and summarise its outputs."""
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.evaluate.inputs import check_feeds, generate_feeds, load_arrays
    from sit_onnx.runtime import SessionSpec, make_session

    if not model.is_file():
        raise SitOnnxError(f"{model}: no such file")
    session = make_session(model, SessionSpec(provider=provider, use_library=use_library))
    feeds = (
        check_feeds(session, load_arrays(inputs_file), str(inputs_file))
        if inputs_file
        else generate_feeds(session, batch)
    )
    outputs = session.run(None, feeds)
    start = time.perf_counter()
    for _ in range(repeat - 1):
        session.run(None, feeds)
    seconds = (time.perf_counter() - start) / max(repeat - 1, 1) if repeat > 1 else None
    summary = []
    for spec, value in zip(session.get_outputs(), outputs):
        value = np.asarray(value)
        numeric = value.astype(np.float64) if value.size and np.issubdtype(value.dtype, np.number) else None
        summary.append(
            {
                "name": spec.name,
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "min": float(np.nanmin(numeric)) if numeric is not None else None,
                "max": float(np.nanmax(numeric)) if numeric is not None else None,
                "mean": float(np.nanmean(numeric)) if numeric is not None else None,
                "nan": int(np.isnan(numeric).sum()) if numeric is not None else 0,
            }
        )
    record = {"model": str(model), "providers": session.get_providers(), "outputs": summary, "seconds_per_run": seconds}
    if as_json:
        emit_json(record)
        return
    click.echo(
        table(
            [
                [o["name"], "x".join(map(str, o["shape"])), o["dtype"], o["min"], o["max"], o["mean"], o["nan"]]
                for o in summary
            ],
            ["output", "shape", "dtype", "min", "max", "mean", "NaNs"],
        )
    )
    click.echo(f"ran on {session.get_providers()[0]}" + (f", {seconds * 1000:.3f} ms per run" if seconds else ""))
