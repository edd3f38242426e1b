"""`sit-onnx layers`: convert the first n softmax sites, n = 0..all, and tabulate accuracy (Tables 2-4)."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import (
    data_options,
    emit_json,
    json_option,
    library_option,
    op_library_option,
    progress,
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
@op_library_option
@json_option
def layers(model, data, dataset, provider, use_library, as_json, **flags):
    """Accuracy as softmax sites are converted one by one, in graph order (without labels: the first
    output's argmax agreement and cosine against the original's)."""
    from dataclasses import asdict

    from sit_onnx.evaluate.experiment import input_data
    from sit_onnx.evaluate.layers import layer_sweep
    from sit_onnx.evaluate.seeding import seed_random_ops
    from sit_onnx.graph.load import load_model
    from sit_onnx.runtime import SessionSpec

    original = load_model(model)
    seed_random_ops(original)  # every row's conversion draws the original's noise
    labelled = input_data(original, data, dataset)
    spec = SessionSpec(provider=provider, use_library=use_library)
    with progress("layers", unit="site") as bar:  # pragma: no mutate
        rows = [asdict(r) for r in layer_sweep(original, rewrite_options_from(flags), labelled, spec, bar.update)]
    if as_json:
        emit_json({"model": str(model), "data": labelled.source, "ann_accuracy": rows[0]["accuracy"], "rows": rows})
        return
    click.echo(f"data: {labelled.source}")
    if labelled.labels is None:
        _label_free_table(rows)
        return
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


def _label_free_table(rows) -> None:
    def percent(value):
        return "-" if value is None else f"{100 * value:.2f}%"

    click.echo("no labels: the first output against the original's")
    click.echo(
        table(
            [[r["converted_sites"], r["last_site"], percent(r["agreement"]), f"{r['cosine']:.6f}"] for r in rows],
            ["sites converted", "last site converted", _agreement_header(rows), "cosine"],
        )
    )


def _agreement_header(rows) -> str:
    """What the agreement column counts: rows deciding alike (an image map's pixels), or an integer
    output's equal values."""
    from sit_onnx.evaluate.compare import ARGMAX, agreement_label

    return agreement_label(rows[0]["agreement_of"], rows[0]["argmax_axis"]) if rows else agreement_label(ARGMAX, None)
