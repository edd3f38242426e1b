"""`sit-onnx layers`: convert the first n softmax sites, n = 0..all, and tabulate accuracy (Tables 2-4)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from sit_onnx.cli.options import (
    data_options,
    emit_json,
    json_option,
    library_option,
    provider_option,
    rewrite_options,
    rewrite_options_from,
    table,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@data_options
@rewrite_options
@provider_option
@library_option
@json_option
def layers(model, data, dataset, provider, use_library, as_json, **flags):
    """Accuracy as softmax sites are converted one by one, in graph order."""
    from tqdm import tqdm

    from sit_onnx.evaluate.accuracy import accuracy_report, predict
    from sit_onnx.evaluate.experiment import labelled_data
    from sit_onnx.graph.convert import rewrite_model
    from sit_onnx.graph.load import load_model
    from sit_onnx.runtime import SessionSpec, make_session

    options = rewrite_options_from(flags)
    spec = SessionSpec(provider=provider, use_library=use_library)
    original = load_model(model)
    labelled = labelled_data(original, data, dataset)
    ann = predict(make_session(original, spec), labelled.arrays, labelled.source)
    _, full = rewrite_model(original, options, source=str(model))
    rows = []
    for n in tqdm(range(len(full.sites) + 1), desc="layers", disable=None, leave=False):
        if n == 0:
            predictions, site = ann, "-"
        else:
            converted, _ = rewrite_model(original, replace(options, first=n), source=str(model))
            predictions, site = (
                predict(make_session(converted, spec), labelled.arrays, labelled.source),
                full.sites[n - 1].name,
            )
        report = accuracy_report(labelled.labels, ann, predictions)
        rows.append(
            {
                "converted_sites": n,
                "last_site": site,
                "accuracy": report.converted_accuracy,
                "loss_points": report.loss_points,
                "agreement": report.agreement,
            }
        )
    if as_json:
        emit_json({"model": str(model), "data": labelled.source, "ann_accuracy": rows[0]["accuracy"], "rows": rows})
        return
    click.echo(f"data: {labelled.source}")
    click.echo(
        table(
            [
                [
                    r["converted_sites"],
                    r["last_site"],
                    f"{100 * r['accuracy']:.2f}%",
                    f"{r['loss_points']:+.2f}",
                    f"{100 * r['agreement']:.2f}%",
                ]
                for r in rows
            ],
            ["sites converted", "last site converted", "accuracy", "loss (points)", "agreement"],
        )
    )
