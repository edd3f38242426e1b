"""`sit-onnx rewrite`: replace every softmax with SpikingExp → SpikingNorm."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import emit_json, json_option, rewrite_options, rewrite_options_from, table


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output file (default: MODEL.sit.onnx beside the input).",
)
@rewrite_options
@click.option("--first", type=click.IntRange(min=0), default=None, help="Convert only the first N softmax sites.")
@click.option("--nodes", multiple=True, metavar="NAME", help="Convert only these sites (repeatable).")
@click.option(
    "--inline",
    is_flag=True,
    help="Expand the spiking ops into standard ONNX ops (for TensorRT, OpenVINO, onnxruntime-web).",
)
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@click.option(
    "--explain",
    is_flag=True,
    help="Also list the softmax-like patterns that were not matched, and why (always in --json).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail when an attention op is left as it was (its softmax unconverted) instead of noting it.",
)
@json_option
def rewrite(model, output, first, nodes, inline, force, explain, strict, as_json, **flags):
    """Convert every Softmax in MODEL to Spiking-Softmax (SIT-conversion)."""
    from sit_onnx.graph.convert_file import rewrite_file
    from sit_onnx.graph.report import attention_summary

    options = rewrite_options_from(flags, first=first, nodes=tuple(nodes), inline=inline, strict=strict)
    report = rewrite_file(model, output, options, force=force)
    if as_json:
        emit_json(report.to_dict())
        return
    ops = sorted(set(report.ops_before) | set(report.ops_after))
    changed = [
        [op, report.ops_before.get(op, 0), report.ops_after.get(op, 0)]
        for op in ops
        if report.ops_before.get(op, 0) != report.ops_after.get(op, 0)
    ]
    click.echo(table(changed, ["op", "before", "after"]))
    rows = [[s.name, s.graph, s.axis, "converted" if s.converted else f"skipped: {s.reason}"] for s in report.sites]
    click.echo(table(rows, ["site", "graph", "axis", "result"]))
    for note in report.notes:
        click.echo(f"note: {note}")
    if explain:
        for miss in report.near_misses:
            click.echo(f"not a site: Exp node '{miss['name']}' in graph {miss['graph']}: {miss['reason']}")
        if not report.near_misses:
            click.echo("not a site: no softmax-like pattern was left unmatched")
    for op in report.attention_left_alone:
        click.echo(f"left alone: {op['op']} node '{op['name']}' in graph {op['graph']}: {op['reason']}")
    left = report.attention_left_alone
    click.echo(
        f"{len(report.converted)} of {len(report.sites)} softmax sites converted"
        + (f"; {attention_summary(left)}" if left else "")
        + f" (K={report.steps}, {'shift' if options.shift else 'no shift'}{', sigmoid' if options.sigmoid else ''}"
        f"{', fused' if report.options['fuse'] else ', chain'}) -> {report.output}"
    )
