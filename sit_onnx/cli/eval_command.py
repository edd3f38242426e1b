"""`sit-onnx eval`: top-1 accuracy of a model and its conversion, their agreement and the loss."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import (
    converted_option,
    data_options,
    emit_json,
    json_option,
    library_option,
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
@json_option
def eval_command(model, converted, data, dataset, provider, use_library, as_json, **flags):
    """Accuracy of MODEL before and after SIT-conversion on labelled data."""
    from sit_onnx.evaluate.experiment import evaluate_accuracy, labelled_data, load_pair
    from sit_onnx.runtime import SessionSpec

    pair = load_pair(model, converted, rewrite_options_from(flags))
    labelled = labelled_data(pair.original, data, dataset)
    report = evaluate_accuracy(pair, labelled, SessionSpec(provider=provider, use_library=use_library))
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
