"""`sit-onnx eval`: top-1 accuracy of a model and its conversion, their agreement and the loss."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from sit_onnx.cli.options import (
    converted_option,
    data_options,
    emit_json,
    json_constant,
    json_option,
    library_option,
    op_library_option,
    progress,
    provider_option,
    rewrite_options,
    rewrite_options_from,
)


@click.command("eval")
@click.argument("model", type=click.Path(path_type=Path))
@converted_option
@data_options
@rewrite_options
@provider_option
@library_option
@op_library_option
@click.option(
    "--batch",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Rows run at a time (a model of fixed batch: its own).",
)
@json_option
def eval_command(model, converted, data, dataset, provider, use_library, batch, as_json, **flags):
    """Accuracy of MODEL before and after SIT-conversion on labelled data; on data without
    'labels', the label-free figures per output (argmax agreement, cosine, errors)."""
    from sit_onnx.evaluate.experiment import evaluate_accuracy, input_data, load_pair
    from sit_onnx.runtime import SessionSpec

    pair = load_pair(model, converted, rewrite_options_from(flags, converted))
    labelled = input_data(pair.original, data, dataset)
    spec = SessionSpec(provider=provider, use_library=use_library)
    if labelled.labels is None:
        _label_free(model, converted, pair, labelled, spec, batch, as_json)
        return
    report = evaluate_accuracy(pair, labelled, spec, batch)
    record = {
        "model": str(model),
        "converted": str(converted) if converted else "converted in memory",
        "data": labelled.source,
        "samples": report.samples,
        "ann_accuracy": report.ann_accuracy,
        "converted_accuracy": report.converted_accuracy,
        "agreement": report.agreement,
        "loss_points": report.loss_points,
    }
    if as_json:
        emit_json(record)
        return
    click.echo(f"data: {labelled.source}, {report.samples} samples")
    click.echo(f"ANN accuracy       {100 * report.ann_accuracy:6.2f}%")
    click.echo(f"converted accuracy {100 * report.converted_accuracy:6.2f}%")
    click.echo(f"agreement          {100 * report.agreement:6.2f}%")
    click.echo(f"conversion loss    {report.loss_points:+6.2f} points")


def _label_free(model, converted, pair, data, spec, batch: int, as_json: bool) -> None:
    from sit_onnx.evaluate.compare import constant_note
    from sit_onnx.evaluate.detections import describe_detections
    from sit_onnx.evaluate.experiment import evaluate_outputs

    rows = len(next(iter(data.arrays.values()))) if data.arrays else 0
    with progress("eval", total=2 * rows, unit="row") as bar:  # pragma: no mutate
        results = evaluate_outputs(pair, data, spec, batch, bar.update)
    outputs = [
        {"name": r.name, "shape": r.shape, "agreement": r.agreement, "agreement_of": r.agreement_of,
         "argmax_axis": r.argmax_axis, "cosine": r.cosine, "max_abs": r.max_abs, "mean_abs": r.mean_abs,
         "constant": r.constant, "detections": asdict(r.detections) if r.detections else None,
         "problem": r.problem}
        for r in results
    ]  # fmt: skip
    if as_json:
        emit_json({"model": str(model), "converted": str(converted) if converted else "converted in memory",
                   "data": data.source, "samples": rows, "labels": False,
                   "outputs": [o | {"constant": json_constant(o["constant"])} for o in outputs]})  # fmt: skip
        return
    click.echo(f"data: {data.source}, {rows} samples, no labels: the converted model against the original")
    for r, o in zip(results, outputs):
        if o["problem"]:
            click.echo(f"[{o['name']}] {o['problem']}")
            continue
        click.echo(f"[{o['name']}] {_agreement_said(o)}cosine {o['cosine']:.6f}, abs error max {o['max_abs']:.4g} "
                   f"mean {o['mean_abs']:.4g}")  # fmt: skip
        if r.detections is not None:
            click.echo(f"[{o['name']}] {describe_detections(r.detections)}")
        if o["constant"] is not None:
            click.echo(f"[{o['name']}] {constant_note(o['constant'])}")


def _agreement_said(output: dict) -> str:
    """The agreement as `compare` takes it: along the last axis, per pixel of an image map, or none
    (a one-channel map, a detector's rows); a cache's or an embedding's is said to decide nothing."""
    from sit_onnx.evaluate.compare import ARGMAX, agreement_label, decides

    if output["agreement"] is None:
        return ""
    said = f"{agreement_label(output['agreement_of'], output['argmax_axis'])} {100 * output['agreement']:.2f}%"
    if output["agreement_of"] == ARGMAX and not decides(output["name"]):
        said += " (a cache, state or embedding: its argmax decides nothing)"
    return said + ", "
