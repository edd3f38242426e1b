"""`sit-onnx run`: run a model (converted or not) on given or generated inputs."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import click
import numpy as np

from sit_onnx.cli.options import (
    emit_json,
    flag_given,
    json_option,
    library_option,
    op_library_option,
    provider_option,
    table,
)

COLUMNS = ("dtype", "min", "max", "mean", "nan", "inf")


def summarise_output(name: str, value) -> dict:
    """Shape, dtype, and min/max/mean over the finite elements, with NaNs and infinities counted
    apart (a converted model can legitimately output them; --json writes null where none are finite)."""
    if isinstance(value, list):  # a sequence of maps or of tensors of different shapes: not stacked
        return _summarise_sequence(name, value)
    value = np.asarray(value)
    record = {"name": name, "shape": list(value.shape), "dtype": str(value.dtype)}
    record.update({"min": None, "max": None, "mean": None, "nan": 0, "inf": 0})
    if not (value.size and np.issubdtype(value.dtype, np.number)):
        return record
    numeric = value.astype(np.float64)
    finite = numeric[np.isfinite(numeric)]
    record.update(nan=int(np.isnan(numeric).sum()), inf=int(np.isinf(numeric).sum()))
    if finite.size:
        record.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))
    return record


def _summarise_sequence(name: str, items: list) -> dict:
    """Shape [items], dtype seq(...), and the figures over every element of its tensors together."""
    tensors = [v for v in items if isinstance(v, np.ndarray)]
    kinds = sorted({str(v.dtype) for v in tensors} | {type(v).__name__ for v in items if not isinstance(v, np.ndarray)})
    flat = np.concatenate([v.ravel() for v in tensors]) if tensors else np.zeros(0)  # a sequence is of one kind
    return summarise_output(name, flat) | {"shape": [len(items)], "dtype": f"seq({', '.join(kinds)})"}


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@provider_option
@library_option
@op_library_option
@click.option(
    "--inputs",
    "inputs_file",
    type=click.Path(path_type=Path),
    default=None,
    help="An .npz with one array per model input (default: random inputs, as `compare` makes them).",
)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size of generated inputs.")
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True, help="Runs to time.")
@click.option(
    "--verify-kernels",
    is_flag=True,
    help="Check that every spiking op of MODEL landed on a kernel (saves the optimised model once).",
)
@json_option
@click.pass_context
def run(ctx, model, provider, use_library, inputs_file, batch, repeat, verify_kernels, as_json):
    """Run MODEL in onnxruntime and summarise its outputs."""
    if inputs_file and flag_given(ctx, "batch"):
        raise click.UsageError("--batch sizes generated inputs; --inputs brings its own rows")  # was unused
    from sit_onnx.evaluate.batching import feed_rows, fixed_batch, run_all_rows
    from sit_onnx.evaluate.inputs import check_feeds, load_arrays, run_generated
    from sit_onnx.graph.load import check_model_path, read_model_proto
    from sit_onnx.runtime import SessionSpec, make_session
    from sit_onnx.runtime.session import run_session, runtime_path

    spec = SessionSpec(provider=provider, use_library=use_library, verify_placement=verify_kernels)
    check_model_path(model)
    arrays = load_arrays(inputs_file) if inputs_file else None  # before the session is made
    session = make_session(model, spec)
    batched = False  # generated inputs take the model's declared dims: one run
    if arrays is not None:
        rows = feed_rows(session, arrays)
        feeds = check_feeds(session, arrays, str(inputs_file), rows)
        outputs = list(run_all_rows(session, feeds, str(model)).values())
        batched = fixed_batch(session, feeds, rows) is not None
    else:
        feeds, outputs = run_generated(
            session, batch, read_model_proto(model), lambda feeds: run_session(session, feeds, str(model))
        )
    # the timed runs: a plain session.run unless a fixed batch splits the file (decided above, not per run)
    rerun = functools.partial(run_all_rows, session, feeds, str(model))
    if not batched:
        rerun = functools.partial(session.run, None, feeds)
    start = time.perf_counter()
    for _ in range(repeat - 1):
        rerun()
    seconds = (time.perf_counter() - start) / max(repeat - 1, 1) if repeat > 1 else None
    summary = [summarise_output(spec.name, value) for spec, value in zip(session.get_outputs(), outputs)]
    record = {
        "model": str(model),
        "providers": session.get_providers(),
        "spiking_ops": runtime_path(spec),
        "outputs": summary,
        "seconds_per_run": seconds,
    }
    if as_json:
        emit_json(record)
        return
    click.echo(
        table(
            [[o["name"], "x".join(map(str, o["shape"]))] + [o[k] for k in COLUMNS] for o in summary],
            ["output", "shape", "dtype", "min", "max", "mean", "NaNs", "infs"],
        )
    )
    click.echo(f"ran on {session.get_providers()[0]}" + (f", {seconds * 1000:.3f} ms per run" if seconds else ""))
    click.echo(f"spiking ops ran on: {record['spiking_ops']}")
