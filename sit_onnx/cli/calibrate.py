"""`sit-onnx calibrate`: per softmax site, what it is fed and how to convert it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from sit_onnx.cli.options import activations_option, data_options, emit_json, json_option, op_library_option, table


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@data_options
@click.option("--samples", type=click.IntRange(1), default=256, show_default=True, help="Rows of the data to use.")
@activations_option("Also report what these activations are fed: the range a set must cover.")
@op_library_option
@json_option
def calibrate(model, data, dataset, samples, activations, as_json):
    """Softmax input statistics on data, with and without max-shift, and a recommendation."""
    from sit_onnx.evaluate.activation_params import activation_inputs
    from sit_onnx.evaluate.calibrate import calibrate as calibrate_sites
    from sit_onnx.evaluate.experiment import input_data, sample_feeds
    from sit_onnx.graph.load import load_model

    original = load_model(model)
    feeds = sample_feeds(original, input_data(original, data, dataset), samples)
    sites = calibrate_sites(original, feeds)
    functions = activation_inputs(original, feeds, activations) if activations else []
    if not sites and not functions:
        _refuse_unreached(model, original, activations)
    if as_json:
        emit_json(
            {
                "model": str(model),
                "samples": len(next(iter(feeds.values()))),
                "sites": [asdict(s) for s in sites],
                "activations": [
                    {k: v for k, v in c.to_dict().items() if k not in ("candidates", "chosen")} for c in functions
                ],
            }
        )
        return
    _print_activations(functions)
    if not sites:
        return
    click.echo(
        table(
            [
                [
                    s.name,
                    s.min,
                    s.p01,
                    s.p50,
                    s.p99,
                    s.max,
                    f"{100 * s.masked:.1f}%",
                    f"{100 * s.inside_paper_range:.1f}%",
                    f"{100 * s.inside_shift_range:.1f}%",
                ]
                for s in sites
            ],
            ["site", "min", "p1", "median", "p99", "max", "masked", "in [-1,1]", "shifted in [-12,0]"],
        )
    )
    for s in sites:
        click.echo(f"{s.name}: {s.recommendation}")


def _print_activations(choices) -> None:
    if not choices:
        return
    from sit_onnx.neurons.activation import activation_function

    rows = [
        [
            c.function,
            c.sites,
            c.samples,
            c.p01,
            c.p50,
            c.p99,
            list(activation_function(c.function).default_range),
            f"{100 * c.inside_range:.1f}%",
        ]
        for c in choices
    ]
    click.echo(table(rows, ["activation", "sites", "inputs", "p1", "median", "p99", "shipped range", "in range"]))


def _refuse_unreached(model: Path, original, activations) -> None:
    """Nothing the data reaches: say whether the model holds no softmax or holds it where no value
    can be read out (a Loop or Scan body, a generation op's decoder)."""
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.evaluate.calibrate import unreached
    from sit_onnx.graph.convert import find_canonical_sites

    found = len(find_canonical_sites(original)[1])
    if found:
        raise SitOnnxError(f"{model}: its {unreached(found, 'softmax site')}: nothing to calibrate")
    raise SitOnnxError(f"{model}: no Softmax node{' nor asked-for activation' if activations else ''} to calibrate")
