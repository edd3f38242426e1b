"""`sit-onnx energy`: the paper's section 4.1.2 estimate, per layer and in total."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from sit_onnx.cli.options import (
    converted_option,
    data_options,
    emit_json,
    json_option,
    op_library_option,
    rewrite_options,
    rewrite_options_from,
    table,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@converted_option
@data_options
@rewrite_options
@click.option(
    "--samples",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Rows of the data to measure spike counts on.",
)
@op_library_option
@json_option
def energy(model, converted, data, dataset, samples, as_json, **flags):
    """Energy per sample of MODEL as an ANN and as converted (E_MAC 4.6 pJ, E_AC 0.9 pJ)."""
    from sit_onnx.evaluate.energy import estimate_energy
    from sit_onnx.evaluate.experiment import input_data, load_pair, sample_feeds

    pair = load_pair(model, converted, rewrite_options_from(flags, converted))
    feeds = sample_feeds(pair.original, input_data(pair.original, data, dataset), samples)
    report = estimate_energy(pair.original, pair.converted, feeds)
    if as_json:
        emit_json({**asdict(report), "reduction": report.reduction})
        return
    click.echo(energy_text(report))


def energy_text(report) -> str:
    rows = [
        [
            layer.name,
            layer.op,
            layer.macs,
            layer.ann_pj / 1e3,
            layer.converted_pj / 1e3,
            "-" if layer.spike_rate is None else f"{layer.spike_rate:.3f}",
        ]
        for layer in report.layers
    ]
    rows.append(["spiking neurons", "AC", report.neuron_ops, 0.0, report.neuron_ops * 0.9 / 1e3, "-"])
    lines = [
        table(rows, ["layer", "op", "MACs/sample", "ANN nJ", "converted nJ", "spikes/neuron in"]),
        f"total per sample: ANN {report.ann_pj / 1e3:.2f} nJ, converted {report.converted_pj / 1e3:.2f} nJ "
        f"({100 * report.reduction:+.1f}% reduction)",
        f"note: {report.caveat}",
    ]
    return "\n".join(lines)
