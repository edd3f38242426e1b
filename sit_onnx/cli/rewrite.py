"""`sit-onnx rewrite`: replace every softmax with SpikingExp → SpikingNorm."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import (
    emit_json,
    flag_given,
    json_option,
    op_library_option,
    progress,
    rewrite_options,
    rewrite_options_from,
    table,
)


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
    help="Also list the softmax-like patterns that were not matched, and why, and the shape annotations dropped "
    "because no inference confirms them (always in --json).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail when an attention op is left as it was (its softmax unconverted) instead of noting it.",
)
@click.option(
    "--calibrate",
    "calibrate_data",
    metavar="DATA.npz|digits",
    default=None,
    help="Per-site calibration: run the model on this data (an .npz of its inputs, or a bundled data "
    "set) and give each softmax site the parameter set that serves its own logits (and, with "
    "--activations, each activation function the set that serves its inputs).",
)
@click.option(
    "--calibrate-samples",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Rows of the calibration data to run.",
)
@click.option(
    "--calibrate-rounds",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Polish rounds per site on its own rows (0: only choose among the shipped sets).",
)
@op_library_option
@json_option
@click.pass_context
def rewrite(
    ctx,
    model,
    output,
    first,
    nodes,
    inline,
    force,
    explain,
    strict,
    calibrate_data,
    calibrate_samples,
    calibrate_rounds,
    as_json,
    **flags,
):
    """Convert every Softmax in MODEL to Spiking-Softmax (SIT-conversion)."""
    from sit_onnx.graph.convert_file import rewrite_file

    for name in ("calibrate_samples", "calibrate_rounds"):  # silently unused before
        if calibrate_data is None and flag_given(ctx, name):
            raise click.UsageError(f"--{name.replace('_', '-')} serves --calibrate, which is not given")
    options = rewrite_options_from(flags, first=first, nodes=tuple(nodes), inline=inline, strict=strict)
    choices, activation_choices = [], []
    site_params = activation_sets = None
    if calibrate_data is not None:
        site_params, activation_sets = _calibrated_sets(
            options, calibrate_data, calibrate_samples, calibrate_rounds, choices, activation_choices
        )
    report = rewrite_file(model, output, options, force=force, site_params=site_params, activation_sets=activation_sets)
    report.calibration = [c.to_dict() for c in choices]
    report.activation_calibration = [c.to_dict() for c in activation_choices]
    uncalibrated = _uncalibrated(report, choices) if calibrate_data is not None else []
    if as_json:
        emit_json({**report.to_dict(), **({"uncalibrated": uncalibrated} if calibrate_data is not None else {})})
        return
    _print_report(report, options, explain)
    if choices:
        _print_calibration(choices)
    if uncalibrated:
        from sit_onnx.evaluate.calibrate import unreached

        click.echo(f"note: {unreached(len(uncalibrated), 'converted site')}: the shipped default set there")
    if activation_choices:
        _print_activation_calibration(activation_choices)


def _uncalibrated(report, choices) -> list[str]:
    """The converted sites calibration gave no set of their own."""
    chosen = {c.name for c in choices}
    return [s.name for s in report.sites if s.converted and s.name not in chosen]


def _calibrated_sets(options, data: str, samples: int, rounds: int, choices: list, activation_choices: list):
    """Callbacks for rewrite_file: calibrate the loaded model's softmax sites and (with --activations)
    its activation functions, record the choices, return the sets."""
    if options.params_file or options.sigmoid or not options.shift or options.objective:
        raise click.UsageError(
            "--calibrate chooses the max-shift mode's sets itself; it takes none of --params, --sigmoid, "
            "--no-shift, --objective"
        )
    from sit_onnx.evaluate.datasets import check_data_choice

    data_file, dataset = (None, data) if data == "digits" else (data, None)  # --calibrate takes either
    check_data_choice(data_file, dataset)  # before the model is read
    loaded = {}

    def feeds_of(model) -> dict:
        """The calibration rows, read once for both callbacks."""
        from sit_onnx.evaluate.experiment import input_data, sample_feeds

        if not loaded:
            arrays = input_data(model, data_file, dataset)
            loaded.update(sample_feeds(model, arrays, samples))
        return loaded

    def calibrated(model):
        from sit_onnx.evaluate.site_params import choose_site_params

        with progress("calibrate", unit="site") as bar:  # pragma: no mutate
            choices.extend(choose_site_params(model, feeds_of(model), options.steps, rounds, bar.update))
        return {c.name: c.params for c in choices}

    def activations(model):
        from sit_onnx.evaluate.activation_params import choose_activation_params

        feeds, functions = feeds_of(model), options.activations
        with progress("calibrate activations", unit="function") as bar:  # pragma: no mutate
            steps = options.activation_k(options.steps)
            gated = options.activation_form == "gated"
            found = choose_activation_params(model, feeds, functions, steps, rounds > 0, bar.update, gated)
        activation_choices.extend(found)
        return {c.function: c.params for c in found}

    return calibrated, (activations if options.activations else None)


def _print_calibration(choices) -> None:
    """Per site: the rows, the low end of the shifted logits, the set chosen and, for the shipped
    default and the choice, the held-out error the choice is made by (`value`: mean L1 + mean worst
    weight error + a tenth of the KL), then the KL and the largest weight error on their own."""
    figures = ("value", "kl", "worst")
    rows = []
    for c in choices:
        default, chosen = c.candidates["shipped softmax"], c.candidates[c.chosen]
        cells = [cell for key in figures for cell in (default[key], chosen[key])]
        rows.append([c.name, c.rows, c.length, f"{c.shifted_p01:.2f}", c.chosen, *cells])
    names = ("error", "KL", "worst")
    columns = [f"{name} {which}" for name in names for which in ("default", "chosen")]
    click.echo(table(rows, ["site", "rows", "n", "p1 shifted", "set", *columns]))


def _print_activation_calibration(choices) -> None:
    rows = []
    for c in choices:
        shipped, chosen = c.candidates["shipped"], c.candidates[c.chosen]
        rows.append(
            [
                c.function,
                c.sites,
                c.samples,
                f"{c.p01:.2f}",
                f"{c.p99:.2f}",
                f"{c.inside_range:.3f}",
                c.chosen,
                shipped["rmse"],
                chosen["rmse"],
            ]
        )
    header = ["activation", "sites", "inputs", "p1", "p99", "in range", "set", "RMSE shipped", "RMSE chosen"]
    click.echo(table(rows, header))


def _print_report(report, options, explain: bool) -> None:
    from sit_onnx.graph.report import attention_summary
    from sit_onnx.graph.site_roles import ATTENTION

    ops = sorted(set(report.ops_before) | set(report.ops_after))
    changed = [
        [op, report.ops_before.get(op, 0), report.ops_after.get(op, 0)]
        for op in ops
        if report.ops_before.get(op, 0) != report.ops_after.get(op, 0)
    ]
    click.echo(table(changed, ["op", "before", "after"]))
    rows = [
        [s.name, s.graph, s.axis, s.role, "converted" if s.converted else f"skipped: {s.reason}"] for s in report.sites
    ]
    click.echo(table(rows, ["site", "graph", "axis", "role", "result"]))
    if report.activations:
        rows = [
            [a["name"], a["graph"], a["function"], a["form"], a["set"], a["range"], a["steps"]]
            for a in report.activations
        ]
        click.echo(table(rows, ["activation", "graph", "function", "form", "set", "range", "K"]))
    for note in report.notes:
        click.echo(f"note: {note}")
    if explain:
        for miss in report.near_misses:
            click.echo(f"not a site: {miss['op']} node '{miss['name']}' in graph {miss['graph']}: {miss['reason']}")
        if not report.near_misses:
            click.echo("not a site: no softmax-like pattern was left unmatched")
        for annotation in report.unproven_annotations:
            click.echo(f"dropped annotation: {annotation}: no inference confirms its fixed dims")
        for miss in report.activation_misses:
            click.echo(
                f"not an activation site: {miss['function']} node '{miss['name']}' in graph {miss['graph']}: "
                f"{miss['reason']}"
            )
    for op in report.attention_left_alone:
        click.echo(f"left alone: {op['op']} node '{op['name']}' in graph {op['graph']}: {op['reason']}")
    left = report.attention_left_alone
    others = sum(1 for s in report.sites if s.converted and s.role != ATTENTION)
    if others:
        click.echo(f"note: {others} converted site(s) not attention (their role above): --attention-only leaves them")
    click.echo(
        f"{len(report.converted)} of {len(report.sites)} softmax sites converted"
        + (f", {len(report.activations)} activations" if options.activations else "")
        + (f"; {attention_summary(left)}" if left else "")
        + f" (K={report.steps}, {'shift' if options.shift else 'no shift'}{', sigmoid' if options.sigmoid else ''}"
        f"{', fused' if report.options['fuse'] else ', chain'}) -> {report.output}"
    )
