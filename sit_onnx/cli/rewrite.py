"""`sit-onnx rewrite`: replace every softmax with SpikingExp → SpikingNorm."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import emit_json, json_option, table


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: MODEL.sit.onnx beside the input).")
@click.option("--steps", "-k", type=int, default=12, show_default=True, help="K of the shipped SI-exp set.")
@click.option("--params", "params_file", type=click.Path(path_type=Path), default=None,
              help="A fitted parameter set (from `sit-onnx neuron fit`) instead of a shipped one.")
@click.option("--sigmoid", is_flag=True, help="Insert a Sigmoid before SpikingExp (the paper's Next-ViT/UniFormer path; "
                                               "changes the model, fine-tune after).")
@click.option("--shift/--no-shift", default=True, show_default=True,
              help="Subtract the max along the axis first, so logits of any range land in the fitted range "
                   "(--no-shift is the paper's mode, fitted on [-1, 1]).")
@click.option("--time-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="SpikingNorm input spikes N; 0 = the paper's amplified closed form w/V_th.")
@click.option("--first", type=click.IntRange(min=0), default=None, help="Convert only the first N softmax sites.")
@click.option("--nodes", multiple=True, metavar="NAME", help="Convert only these sites (repeatable).")
@click.option("--inline", is_flag=True, help="Expand the spiking ops into standard ONNX ops "
                                              "(for TensorRT, OpenVINO, onnxruntime-web).")
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@json_option
def rewrite(model, output, steps, params_file, sigmoid, shift, time_steps, first, nodes, inline, force, as_json):
    """Convert every Softmax in MODEL to Spiking-Softmax (SIT-conversion)."""
    from sit_onnx.graph.convert import RewriteOptions, rewrite_file

    options = RewriteOptions(steps=steps, params_file=str(params_file) if params_file else None, sigmoid=sigmoid,
                             shift=shift, time_steps=time_steps, first=first, nodes=tuple(nodes), inline=inline)
    report = rewrite_file(model, output, options, force=force)
    if as_json:
        emit_json(report.to_dict())
        return
    ops = sorted(set(report.ops_before) | set(report.ops_after))
    changed = [[op, report.ops_before.get(op, 0), report.ops_after.get(op, 0)] for op in ops
               if report.ops_before.get(op, 0) != report.ops_after.get(op, 0)]
    click.echo(table(changed, ["op", "before", "after"]))
    rows = [[s.name, s.graph, s.axis, "converted" if s.converted else f"skipped: {s.reason}"] for s in report.sites]
    click.echo(table(rows, ["site", "graph", "axis", "result"]))
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(f"{len(report.converted)} of {len(report.sites)} softmax sites converted "
               f"(K={report.steps}, {'shift' if shift else 'no shift'}{', sigmoid' if sigmoid else ''}) -> {report.output}")

