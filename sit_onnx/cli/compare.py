"""`sit-onnx compare A B`: per output, error statistics and PASSED/FAILED, as Polygraphy reports them.

A spiking conversion is approximate by design, so by default an output passes when it points the
same way as the reference (cosine >= --min-cosine) and, where it has rows, decides the same
(argmax agreement >= --min-agreement; not asked of a KV cache, `present*`/`past*`, nor of an
embedding or hidden state, `*embed*`, `*hidden_state*`, `*pooler*`, `*feature*`). A dense map of an
input image (segmentation, depth, saliency: its last two dims the image's, or a stride of them) is
judged per pixel over its channels, and by its cosine alone with one channel. An Ultralytics YOLO
detector's output (its metadata says so) is judged by its detections, matched one to one by class
and overlap (evaluate/detections.py). Where the argmax
changed, the report says how close the reference's own choice was (its top-1's lead over its top-2,
as a share of the row's range); --min-margin leaves rows the reference decides by less out of the
agreement, so near-ties (a random-weight decoder's logits) do not fail a sound conversion. Give
--atol and/or --rtol for Polygraphy's strict element-wise check instead. --noise-floor also runs the
candidate with its softmax sites put back exact but rounded to float16, and shows how far that moves
from the reference: a model that amplifies any change of its attention cannot pass at any K."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import click

from sit_onnx.cli.options import (
    emit_json,
    flag_given,
    json_constant,
    json_option,
    library_option,
    not_nan,
    op_library_option,
    provider_option,
)

GENERATED_MIN_MARGIN = 0.02  # random inputs: a flip where the top-1 led by under 2% of the row's range is noise


@click.command()
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--inputs",
    "inputs_file",
    type=click.Path(path_type=Path),
    default=None,
    help="An .npz with one array per input (default: random inputs, batch 4, dynamic lengths 16, ids within "
    "their embedding tables, *mask* inputs all ones).",
)
@click.option(
    "--atol",
    type=click.FloatRange(min=0),
    default=None,
    callback=not_nan,
    help="Strict check: |a-b| <= atol + rtol*|a| everywhere (default: the approximate check).",
)
@click.option(
    "--rtol", type=click.FloatRange(min=0), default=None, callback=not_nan, help="With --atol: relative part."
)
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=0.999, show_default=True, callback=not_nan)
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True, callback=not_nan)
@click.option(
    "--min-margin",
    type=click.FloatRange(0, 1),
    default=None,
    callback=not_nan,
    help="Count only rows whose reference top-1 leads its top-2 by this share of the row's range "
    "(0.01: near-ties of 1%% are not decisions). Default: 0 with --inputs, 0.02 on generated inputs, whose "
    "random rows decide nothing by a hair's breadth.",
)
@click.option(
    "--noise-floor",
    is_flag=True,
    help="Also run CANDIDATE with every SpikingSoftmax put back as the exact softmax rounded to float16, and "
    "show how far that alone moves the outputs from REFERENCE (informational: the verdict is unchanged).",
)
@provider_option
@library_option
@op_library_option
@json_option
@click.pass_context
def compare(
    ctx,
    reference,
    candidate,
    inputs_file,
    atol,
    rtol,
    min_cosine,
    min_agreement,
    min_margin,
    noise_floor,
    provider,
    use_library,
    as_json,
):
    """Run REFERENCE and CANDIDATE on the same inputs and compare every output."""
    from sit_onnx.evaluate.compare import approximately_equal
    from sit_onnx.evaluate.inputs import describe_feeds
    from sit_onnx.evaluate.judge import OutputJudge
    from sit_onnx.runtime import SessionSpec

    if atol is not None or rtol is not None:  # the strict check reads neither threshold: silently unused before
        for name in ("min_cosine", "min_agreement"):
            if flag_given(ctx, name):
                flag = "--" + name.replace("_", "-")
                raise click.UsageError(f"{flag} sets the approximate check; --atol/--rtol ask for the strict one")

    runs = _run_both(
        reference, candidate, inputs_file, noise_floor, SessionSpec(provider=provider, use_library=use_library)
    )
    strict = atol is not None or rtol is not None
    atol, rtol = atol or 0.0, rtol or 0.0
    if min_margin is None:
        min_margin = 0.0 if inputs_file else GENERATED_MIN_MARGIN
    judged = OutputJudge(runs.ref_out, runs.feeds, runs.reference_proto, min_margin)
    results = judged.compared(runs.cand_out, atol, rtol)
    if not strict:
        for r in results:
            r.passed = approximately_equal(r, min_cosine, min_agreement)
    floors = {r.name: r for r in judged.compared(runs.floor_out, 0.0, 0.0)} if runs.floor_out is not None else {}
    passed = all(r.passed for r in results)
    if as_json:
        emit_json(
            {
                "reference": str(reference),
                "candidate": str(candidate),
                "inputs": str(inputs_file) if inputs_file else describe_feeds(runs.feeds),
                "passed": passed,
                "check": "tolerance" if strict else "approximate",
                "min_cosine": None if strict else min_cosine,
                "min_agreement": None if strict else min_agreement,
                "min_margin": min_margin,
                "outputs": [asdict(r) | {"constant": json_constant(r.constant)} for r in results],
                "noise_floor": _floor_json(floors) if runs.floor_out is not None else None,
                "seeded_random_ops": len(runs.random_ops),
            }
        )
    else:
        if not inputs_file:
            click.echo(describe_feeds(runs.feeds))
        _print_results(runs, results, judged, floors, (min_cosine, min_agreement) if not strict else None)
        verdict = "PASSED" if passed else "FAILED"
        click.echo(f"{verdict} | {runs.provider_used} | sit-onnx compare {reference} {candidate}")
    if not passed:
        raise click.exceptions.Exit(1)


@dataclass
class _Runs:
    """Both models (and the noise floor) run on the same inputs."""

    reference_proto: object  # the reference without its weights: what generated inputs and detectors read
    feeds: dict
    ref_out: dict
    cand_out: dict
    floor_out: dict | None
    random_ops: list  # the reference's unseeded random ops, seeded alike in both models
    provider_used: str


def _run_both(reference, candidate, inputs_file, noise_floor: bool, spec) -> _Runs:
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.evaluate.batching import feed_rows, run_all_rows
    from sit_onnx.evaluate.compare import check_comparable
    from sit_onnx.evaluate.inputs import check_feeds, load_arrays, run_generated, said_of_generated
    from sit_onnx.evaluate.noise_floor import floor_outputs
    from sit_onnx.evaluate.seeding import seeded_session, unseeded_random_ops
    from sit_onnx.evaluate.signature import check_same_inputs
    from sit_onnx.graph.load import read_model_proto
    from sit_onnx.runtime import make_session

    reference_proto = read_model_proto(reference)
    check_same_inputs(reference_proto, read_model_proto(candidate), (str(reference), str(candidate)), True)
    arrays = load_arrays(inputs_file) if inputs_file else None  # before two sessions are made
    random_ops = unseeded_random_ops(reference_proto)
    session_of = seeded_session if random_ops else make_session  # seeded: both draw the same noise
    ref_session, cand_session = session_of(reference, spec), session_of(candidate, spec)

    def reference_outputs(feeds) -> dict:
        return run_all_rows(ref_session, feeds, str(reference))

    if arrays is not None:
        feeds = check_feeds(ref_session, arrays, str(inputs_file), feed_rows(ref_session, arrays))
        ref_out = reference_outputs(feeds)
    else:
        feeds, ref_out = run_generated(ref_session, 4, reference_proto, reference_outputs)
    check_comparable(ref_out, str(reference))
    cand_feeds = check_feeds(cand_session, feeds, str(candidate), feed_rows(cand_session, feeds))  # float types cast
    with said_of_generated(feeds, not inputs_file):
        cand_out = run_all_rows(cand_session, cand_feeds, str(candidate))
        floor_out = floor_outputs(candidate, spec.provider, cand_feeds) if noise_floor else None
    missing = sorted(set(ref_out) - set(cand_out))
    if missing:
        raise SitOnnxError(f"{candidate}: lacks the outputs {', '.join(missing)}")
    provider_used = cand_session.get_providers()[0]
    return _Runs(reference_proto, feeds, ref_out, cand_out, floor_out, random_ops, provider_used)


def _print_results(runs: _Runs, results, judged, floors: dict, approximate: tuple[float, float] | None) -> None:
    """Per output its check, figures, noise floor and verdict; `approximate` is (min cosine, min
    agreement), None for the element-wise tolerance check."""
    from sit_onnx.evaluate.seeding import describe_random_ops

    if runs.random_ops:
        drawn = describe_random_ops(runs.random_ops)
        click.echo(f"random ops seeded alike in both models ({drawn}): one draw of their noise")
    strict = approximate is None
    min_cosine, min_agreement = approximate or (0.0, 0.0)
    for r in results:
        check = f"tolerance atol={r.atol:g} rtol={r.rtol:g}" if strict else _approximate(r, min_cosine, min_agreement)
        click.echo(f"[{r.name}] shape {r.shape}, {check}")
        for line in _output_lines(r, judged.axes[r.name], strict):
            click.echo(f"    {line}")
        if r.name in floors:
            click.echo(_floor_line(floors[r.name], min_cosine, min_agreement, strict))
        if r.name in judged.sampled:
            click.echo(f"    note: {SAMPLED}")
        click.echo(f"    {'PASSED' if r.passed else 'FAILED'}")


def _floor_json(floors: dict) -> dict:
    from sit_onnx.evaluate.noise_floor import FLOOR_PRECISION

    return {
        "precision": FLOOR_PRECISION,
        "outputs": {
            name: {"cosine": f.cosine, "agreement": f.agreement, "max_abs": f.max_abs, "problem": f.problem}
            for name, f in floors.items()
        },
    }


def _floor_line(floor, min_cosine: float, min_agreement: float, strict: bool) -> str:
    """How far rounding the attention weights alone moves this output; where that already misses
    the approximate check, say that no conversion can meet it on this model."""
    from sit_onnx.evaluate.compare import AGREEMENT_LABELS, VALUES, approximately_equal, decides
    from sit_onnx.evaluate.noise_floor import FLOOR_PRECISION

    head = f"    noise floor (attention weights rounded to {FLOOR_PRECISION}): "
    if floor.problem:  # the rounding alone changed the output's shape (a duration, a count)
        moved = "the reference changes that much from the rounding alone: no conversion meets any check here"
        return f"{head}{floor.problem}\n    {moved}"
    shown = floor.agreement is not None and (decides(floor.name) or floor.agreement_of == VALUES)
    agreement = f", {AGREEMENT_LABELS[floor.agreement_of]} {100 * floor.agreement:.2f}%" if shown else ""
    line = f"{head}cosine {floor.cosine:.6f}{agreement}, max abs error {floor.max_abs:.4g}"
    if not strict and not approximately_equal(floor, min_cosine, min_agreement):
        line += "\n    the reference moves that far from the rounding alone: no conversion meets this check here"
    return line


SAMPLED = (
    "tokens drawn by Sampling (one seed for both models): they part ways wherever the conversion moves a "
    "probability across a draw, and every token after differs; a greedy or beam search shows the conversion's "
    "own effect"
)


def _output_lines(r, axis: int | None, strict: bool) -> list[str]:
    """An output's figures, then what decides it: detections, the argmax, or nothing."""
    from sit_onnx.evaluate.compare import (
        MAP_CHANNELS,
        VALUES,
        constant_note,
        decides,
        describe_agreement,
        describe_equal_values,
    )
    from sit_onnx.evaluate.detections import describe_detections

    if r.problem:
        return [r.problem]
    lines = [
        f"abs error: max {r.max_abs:.4g}, mean {r.mean_abs:.4g}, median {r.median_abs:.4g}",
        f"rel error: max {r.max_rel:.4g}, mean {r.mean_rel:.4g}, median {r.median_rel:.4g}",
        f"cosine similarity {r.cosine:.6f}; minimum atol that would pass: {r.min_atol_to_pass:.4g}",
    ]
    if r.constant is not None:
        lines.append(constant_note(r.constant))
    if r.agreement_of == VALUES:
        lines.append(describe_equal_values(r))
    elif r.detections is not None:
        lines.append(describe_detections(r.detections))
    elif r.ties is not None and (decides(r.name) or strict):
        per_pixel = " (per pixel, over the map's channels)" if r.argmax_axis == MAP_CHANNELS else ""
        lines.append(f"{describe_agreement(r.agreement, r.ties)}{per_pixel}")
    elif axis is None:
        lines.append("a one-channel map of the input image (saliency, depth, a mask): no argmax decides")
    elif r.agreement is not None:
        lines.append(f"argmax agreement {100 * r.agreement:.2f}% of rows (a cache, state or embedding: not judged)")
    return lines


def _approximate(r, min_cosine: float, min_agreement: float) -> str:
    """What the approximate check asks of this output."""
    from sit_onnx.evaluate.compare import AGREEMENT_LABELS, VALUES

    if r.agreement_of == VALUES:
        return f"approximate: {AGREEMENT_LABELS[VALUES]} >= {min_agreement:g} (an integer output)"
    if r.detections is None:
        return f"approximate: cosine >= {min_cosine:g}, argmax agreement >= {min_agreement:g}"
    cosine = "" if r.detections.kind == "end2end" else f"cosine >= {min_cosine:g}, "
    return f"approximate: {cosine}detections matched >= {min_agreement:g} both ways"
