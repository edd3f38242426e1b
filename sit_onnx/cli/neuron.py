"""`sit-onnx neuron fit|show|sweep`: fit SI-exp parameters and inspect the shipped sets."""

from __future__ import annotations

from pathlib import Path

import click

from sit_onnx.cli.options import check_range, emit_json, flag_given, json_option, progress, range_option, table
from sit_onnx.neurons.activation import FUNCTIONS
from sit_onnx.neurons.objective import KL_WEIGHT
from sit_onnx.neurons.params import PAPER_RANGE, SHIFT_RANGE, SHIPPED_STEPS, shipped_params
from sit_onnx.neurons.quality import as_dict, exp_quality, row_quality
from sit_onnx.neurons.sweep import SWEEP_LENGTHS


@click.group()
def neuron():
    """Fit and inspect SI-exp parameter sets."""


@neuron.command()
@click.option("--steps", "-k", type=click.IntRange(1, 64), default=12, show_default=True, help="Time steps K.")
@range_option(
    default=PAPER_RANGE,
    help_text="Input range LO HI the neuron is fitted on (default: -1 1, the paper's; -12 0, max-shift's, "
    "with --objective softmax).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the parameter JSON.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--restarts",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Random restarts of the surrogate-gradient phase.",
)
@click.option(
    "--iterations",
    type=click.IntRange(10, 100_000),
    default=1500,
    show_default=True,
    help="Adam iterations per restart.",
)
@click.option(
    "--polish-rounds",
    type=click.IntRange(0, 1000),
    default=40,
    show_default=True,
    help="Rounds of coordinate search on the true error.",
)
@click.option(
    "--init",
    type=click.Choice(["spread", "random"]),
    default="spread",
    show_default=True,
    help="How restarts begin: thresholds spread evenly down the range, or random.",
)
@click.option(
    "--weighting",
    type=click.Choice(["absolute", "relative"]),
    default="absolute",
    show_default=True,
    help="Fit the absolute error, or the error relative to exp(x) (keeps small values: better softmax KL).",
)
@click.option(
    "--objective",
    type=click.Choice(["exp-rmse", "softmax"]),
    default="exp-rmse",
    show_default=True,
    help="exp-rmse: exp's RMSE on the range (the paper's protocol). softmax: the Spiking-Softmax error "
    "(mean KL + mean worst weight) on rows of max-shifted logits; needs a range [LO, 0].",
)
@click.option(
    "--kl-weight",
    type=click.FloatRange(0, 100),
    default=KL_WEIGHT,
    show_default=True,
    help="softmax objective: the weight of the mean KL beside the mean L1 and worst weight error "
    "(more keeps small weights alive; the shipped K=8 set took 1.5).",
)
@click.option(
    "--rows",
    "rows_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="softmax objective: an .npz of real logits (each array's last axis is the softmax axis) "
    "instead of the N(0, sigma^2) row family.",
)
@click.option(
    "--warm-start",
    metavar="shipped|FILE",
    default=None,
    help="Skip the exploration: polish from this set's thresholds and resets ('shipped': the "
    "shipped exp-rmse set for K and the range).",
)
@click.option(
    "--neurons",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Sum this many offset copies of the neuron per input (an ensemble set; M x the work).",
)
@click.option(
    "--function",
    type=click.Choice(["exp", *FUNCTIONS]),
    default="exp",
    show_default=True,
    help="What the neuron approximates: exp (SI-exp, for softmax) or an activation for SpikingActivation "
    "(its range defaults to the shipped one: "
    + ", ".join(f"{f.name} [{f.default_range[0]:g}, {f.default_range[1]:g}]" for f in FUNCTIONS.values())
    + ").",
)
@click.option(
    "--inputs",
    metavar="normal:MU,SD|FILE.npz",
    default=None,
    help="Activations only: weight the error by how often inputs fall on each part of the range: draws of "
    "N(MU, SD^2), or the values of every array in an .npz (an activation's inputs captured from a model).",
)
@click.option(
    "--hops",
    type=click.IntRange(0, 100_000),
    default=0,
    show_default=True,
    help="Basin hops after the polish: move one to three thresholds or resets at random, polish briefly, "
    "keep the result if better (seeded; the error never rises; 1-2 s a hop for an activation, 9-21 s for "
    "the softmax objective at K = 8-16).",
)
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@json_option
@click.pass_context
def fit(
    ctx,
    steps,
    input_range,
    output,
    seed,
    restarts,
    iterations,
    polish_rounds,
    init,
    weighting,
    objective,
    kl_weight,
    rows_file,
    warm_start,
    neurons,
    function,
    inputs,
    hops,
    force,
    as_json,
):
    """Fit T, h, d so that SI-exp approximates exp (or softmax rows) on the range; write them as JSON."""
    from sit_onnx.neurons.fit import FitOptions, fit_ensemble, fit_si_exp, total_ticks

    input_range = check_range(input_range)
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists (use --force to overwrite)")
    given = flag_given(ctx, "input_range")
    if objective == "softmax" and not given:  # its rows are max-shifted: [-1, 1] was refused
        input_range = SHIFT_RANGE
    if function != "exp":
        _refuse_for_activation(ctx, function)
        return _fit_activation(
            function,
            steps,
            input_range if given else None,
            output,
            seed,
            (restarts, iterations, polish_rounds, init, hops),
            (inputs, warm_start),
            as_json,
        )
    _refuse_for_exp(inputs, kl_weight, rows_file, objective)
    opts = FitOptions(
        steps=steps,
        input_range=input_range,
        seed=seed,
        restarts=restarts,
        iterations=iterations,
        polish_rounds=polish_rounds,
        init=init,
        weighting=weighting,
        objective=objective,
        rows=_rows(rows_file) if rows_file else None,
        warm_start=_warm_start(warm_start, steps, input_range),
        kl_weight=kl_weight,
        hops=hops,
    )
    with progress(f"fit K={steps}", total=total_ticks(opts), unit="it") as bar:  # pragma: no mutate
        params = fit_si_exp(opts, progress=bar.update)
    params = fit_ensemble(params, neurons)
    params.save(output)
    _report_fit(params, output, neurons, objective, as_json)


def _refuse_for_exp(inputs, kl_weight: float, rows_file, objective: str) -> None:
    """Options of the activation fits or of the softmax objective, given to an exp fit without them."""
    if inputs is not None:
        raise click.UsageError("--inputs serves the activation fits (--function), not exp")
    if kl_weight != KL_WEIGHT and objective != "softmax":
        raise click.UsageError("--kl-weight serves the softmax objective only (add --objective softmax)")
    if rows_file is not None and objective != "softmax":
        raise click.BadParameter(
            "real logits serve the softmax objective only (add --objective softmax)", param_hint="--rows"
        )


def _report_fit(params, output, neurons: int, objective: str, as_json: bool) -> None:
    """The fitted set's exp figures and, on a max-shift range, its softmax-row figures (both
    objectives' figures, always)."""
    steps, input_range = params.steps, params.input_range
    rows = row_quality(params) if input_range[1] == 0 else None
    if as_json:
        emit_json(
            {
                "output": str(output),
                "steps": steps,
                "neurons": neurons,
                "range": list(input_range),
                "objective": objective,
                "rmse": params.rmse,
                "max_error": params.max_error,
                "rows": as_dict(rows) if rows is not None else None,
            }
        )
        return
    click.echo(
        f"K={steps}{f' x {neurons} neurons' if neurons > 1 else ''} on "
        f"[{input_range[0]:g}, {input_range[1]:g}] fitted to {objective}: RMSE {params.rmse:.6g}, "
        f"max error {params.max_error:.6g} (100,000 random points) -> {output}"
    )
    if rows is not None:
        click.echo(
            f"  as Spiking-Softmax on held-out N(0, sigma^2) rows: mean KL {rows.kl:.4g}, "
            f"mean worst weight error {rows.worst_mean:.4g}, worst {rows.worst:.4g}"
        )


EXP_ONLY = {"objective": "exp-rmse", "kl_weight": KL_WEIGHT, "rows_file": None, "neurons": 1, "weighting": "absolute"}


def _refuse_for_activation(ctx, function: str) -> None:
    for name, default in EXP_ONLY.items():
        if ctx.params[name] != default:
            flag = "--" + {"rows_file": "rows"}.get(name, name).replace("_", "-")
            raise click.UsageError(f"{flag} serves the exp fit only, not --function {function}")


def _fit_activation(function, steps, input_range, output, seed, search, start, as_json) -> None:
    from sit_onnx.neurons.activation import activation_quality, activation_ticks, fit_activation

    restarts, iterations, polish_rounds, init, hops = search
    inputs, warm_start = start
    samples = _activation_inputs(inputs, seed) if inputs is not None else None
    warm = _activation_warm_start(warm_start, function, steps)
    total = activation_ticks(polish_rounds, 0 if warm else restarts, iterations, hops)  # pragma: no mutate
    with progress(f"fit {function} K={steps}", total=total, unit="it") as bar:  # pragma: no mutate
        params = fit_activation(
            function,
            steps,
            input_range,
            seed,
            bar.update,
            samples=samples,
            warm_start=warm,
            restarts=restarts,
            iterations=iterations,
            polish_rounds=polish_rounds,
            init=init,
            hops=hops,
        )
    if inputs is not None:  # what the error was weighted by, kept with the set
        params.neuron.meta["inputs"] = inputs
    params.save(output)
    quality = activation_quality(params)
    if as_json:
        emit_json({"output": str(output), **as_dict(quality), "bias": params.bias, "tails": list(params.tails)})
        return
    lo, hi = quality.range
    click.echo(
        f"{function} K={steps} on [{lo:g}, {hi:g}]: RMSE {quality.rmse:.6g}, max error {quality.max_error:.6g} "
        f"(100,000 random points), {quality.mean_spikes:.2f} spikes per input -> {output}"
    )


def _activation_inputs(spec: str, seed: int):
    """--inputs as values: 200,000 seeded draws of normal:MU,SD, or every finite value of an .npz."""
    import numpy as np

    from sit_onnx.errors import SitOnnxError
    from sit_onnx.evaluate.inputs import load_arrays

    if spec.startswith("normal:"):
        try:
            mean, sd = (float(v) for v in spec[len("normal:") :].split(","))
        except ValueError:
            raise click.BadParameter(f"{spec!r}: write normal:MU,SD, e.g. normal:-1.2,1.25", param_hint="--inputs")
        if not (np.isfinite(mean) and np.isfinite(sd) and sd > 0):
            raise click.BadParameter(f"{spec!r}: need a finite MU and SD > 0", param_hint="--inputs")
        return np.random.default_rng(seed).normal(mean, sd, 200_000)
    try:
        arrays = load_arrays(spec)
    except SitOnnxError as exc:
        raise click.BadParameter(str(exc), param_hint="--inputs") from None
    values = [a.astype(np.float64).reshape(-1) for a in arrays.values() if np.issubdtype(a.dtype, np.number)]
    values = np.concatenate(values) if values else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise click.BadParameter(f"{spec}: holds no finite numbers", param_hint="--inputs")
    return values


def _activation_warm_start(value: str | None, function: str, steps: int):
    """--warm-start for an activation: its shipped set for K, or a set file of the same function and K."""
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.neurons.activation import load_activation, shipped_activation

    if value is None:
        return None
    try:
        return shipped_activation(function, steps) if value == "shipped" else load_activation(value)
    except SitOnnxError as exc:
        raise click.BadParameter(str(exc), param_hint="--warm-start") from None


def _rows(path: Path):
    """The rows of every array in an .npz of logits, softmax over each array's last axis."""
    import numpy as np

    from sit_onnx.evaluate.inputs import load_arrays
    from sit_onnx.neurons.objective import RowSet

    rows = []
    for name, array in load_arrays(path).items():
        if array.ndim < 1 or array.shape[-1] < 1 or not np.issubdtype(array.dtype, np.floating):
            raise click.BadParameter(f"{path}: array {name!r} is no floating-point logits tensor", param_hint="--rows")
        rows.extend(array.reshape(-1, array.shape[-1]))
    finite = [int(np.isfinite(row).sum()) for row in rows]
    if any(finite) and max(finite) < 2:  # none finite at all: RowSet says so
        raise click.BadParameter(
            f"{path}: no row holds two finite logits; the softmax of one is 1 whatever the neuron", param_hint="--rows"
        )
    try:
        return RowSet.from_rows(rows, f"{len(rows)} rows of {path.name}")
    except ValueError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--rows") from None


def _warm_start(value: str | None, steps: int, input_range):
    from sit_onnx.neurons.params import load_params

    if value is None:
        return None
    if value == "shipped":
        return shipped_params(steps, input_range, objective="exp-rmse")
    return load_params(value)


@neuron.command()
@click.option("--steps", "-k", type=int, default=12, show_default=True, help="Time steps K of the shipped set.")
@range_option(
    default=PAPER_RANGE,
    help_text="Range of the shipped set: -1 1 (paper; the default) or -12 0 (max-shift; the default with "
    "--objective softmax).",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Show this parameter file instead of a shipped set.",
)
@click.option(
    "--objective",
    type=click.Choice(["exp-rmse", "softmax"]),
    default=None,
    help="Which shipped set (default: softmax for the max-shift range, exp-rmse for the paper's).",
)
@click.option(
    "--function",
    type=click.Choice(["exp", *FUNCTIONS]),
    default="exp",
    show_default=True,
    help="exp: an SI-exp set; else the shipped (or --params) SpikingActivation set of that function.",
)
@json_option
@click.pass_context
def show(ctx, steps, input_range, params_file, objective, function, as_json):
    """Print a parameter set's fit error and expected spikes per input."""
    from sit_onnx.neurons.params import load_params

    if function != "exp":
        for name, flag in (("input_range", "--range"), ("objective", "--objective")):  # silently ignored before
            if flag_given(ctx, name):
                raise click.UsageError(f"{flag} picks a shipped SI-exp set, not a --function {function} one")
        return _show_activation(function, steps, params_file, as_json)
    if objective == "softmax" and not flag_given(ctx, "input_range"):  # softmax sets exist on max-shift's range only
        input_range = SHIFT_RANGE
    params = load_params(params_file) if params_file else shipped_params(steps, check_range(input_range), objective)
    quality = exp_quality(params)
    rows = row_quality(params) if params.input_range[1] == 0 else None  # max-shift sets: the row figures
    record = {
        **as_dict(quality),
        "objective": params.meta.get("objective", "exp-rmse"),
        "rows": as_dict(rows) if rows is not None else None,
        "thresholds": list(params.thresholds),
        "resets": list(params.resets),
        "weights": list(params.weights),
        "offsets": list(params.offsets),
        "neurons": params.neurons,
        "method": params.method,
    }
    if as_json:
        emit_json(record)
        return
    lo, hi = quality.range
    ensemble = f" x {params.neurons} offset neurons" if params.neurons > 1 else ""
    click.echo(f"SI-exp K={quality.steps}{ensemble} fitted on [{lo:g}, {hi:g}] ({params.method})")
    click.echo(f"  RMSE {quality.rmse:.6g}, max error {quality.max_error:.6g} over {quality.points:,} uniform points")
    click.echo(f"  expected spikes per input: {quality.mean_spikes:.3f} of {quality.steps} steps")
    if rows is not None:
        click.echo(
            f"  as Spiking-Softmax on held-out N(0, sigma^2) rows: mean KL {rows.kl:.4g}, "
            f"mean worst weight error {rows.worst_mean:.4g}, worst {rows.worst:.4g}"
        )
    rows = [[t + 1, params.thresholds[t], params.resets[t], params.neuron_weights(0)[t]] for t in range(params.steps)]
    click.echo(table(rows, ["t", "T(t)", "h(t)", "d(t)"]))


def _show_activation(function: str, steps: int, params_file, as_json: bool) -> None:
    from sit_onnx.neurons.activation import activation_function, activation_quality, load_activation, shipped_activation

    params = load_activation(params_file) if params_file else shipped_activation(function, steps)
    if params.function != function:
        raise click.UsageError(f"{params_file} holds a {params.function} set, not {function}")
    quality = activation_quality(params)
    n = params.neuron
    record = {
        **as_dict(quality),
        "bias": params.bias,
        "tails": list(params.tails),
        "thresholds": list(n.thresholds),
        "resets": list(n.resets),
        "weights": list(n.weights),
        "method": n.method,
        "inputs": n.meta.get("inputs"),
        "gate": params.gate,
    }
    if as_json:
        emit_json(record)
        return
    lo, hi = quality.range
    s_lo, c_lo, s_hi, c_hi = params.tails
    click.echo(f"SpikingActivation {function} K={quality.steps} fitted on [{lo:g}, {hi:g}] ({n.method})")
    if params.gate:
        serves = activation_function(function).site_function
        click.echo(f"  a gate (op attribute gate=1): the op computes x * this neuron = {serves}; errors are of that")
    if record["inputs"]:
        click.echo(f"  error weighted by where these inputs fall: {record['inputs']}")
    click.echo(f"  RMSE {quality.rmse:.6g}, max error {quality.max_error:.6g} over 100,000 uniform points")
    click.echo(
        f"  expected spikes per input: {quality.mean_spikes:.3f} of {quality.steps} steps; bias {params.bias:.6g}"
    )
    click.echo(
        f"  tails: {s_lo:g}*x + {c_lo:g} below {lo:g}, {s_hi:g}*x + {c_hi:g} above {hi:g} "
        f"(largest error there {quality.tail_max_error:.3g})"
    )
    rows = [[t + 1, n.thresholds[t], n.resets[t], n.weights[t]] for t in range(n.steps)]
    click.echo(table(rows, ["t", "T(t)", "h(t)", "d(t)"]))


@neuron.command()
@click.option(
    "--steps",
    "-k",
    "steps_list",
    type=int,
    multiple=True,
    help="K values to sweep (repeatable); default: every shipped K.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the paper's Figure 7 as a PNG here.",
)
@click.option(
    "--vectors",
    type=click.IntRange(10, 100_000),
    default=2000,
    show_default=True,
    help="Random vectors per softmax length.",
)
@json_option
def sweep(steps_list, plot, vectors, as_json):
    """K against SI-exp RMSE and Spiking-Softmax error (the paper's Figure 7)."""
    from sit_onnx.neurons.sweep import plot_figure7
    from sit_onnx.neurons.sweep import sweep as figure7_sweep

    steps_list = steps_list or SHIPPED_STEPS
    with progress("sweep", total=len(steps_list)) as bar:  # pragma: no mutate
        rows = figure7_sweep(steps_list, vectors, bar.update)
    if plot:
        plot_figure7(rows, plot)
    if as_json:
        emit_json(
            {"sweep": rows, "lengths": list(SWEEP_LENGTHS), "vectors": vectors, "plot": str(plot) if plot else None}
        )
        return
    click.echo(
        table(
            [
                [r["steps"], r["si_exp"]["rmse"], r["si_exp_shift"]["rmse"]] + [s["kl"] for s in r["softmax"]]
                for r in rows
            ],
            ["K", "RMSE[-1,1]", f"RMSE[{SHIFT_RANGE[0]:g},0]"]
            + [f"KL {s['protocol'][:5]} n={s['length']}" for s in rows[0]["softmax"]],
        )
    )
    click.echo("max-shift sets by objective, on held-out N(0, sigma^2) rows (n=2..512, sigma=1..8):")
    click.echo(
        table(
            [
                [r["steps"]]
                + [r["objectives"][o][key] for o in ("exp-rmse", "softmax") for key in ("exp_rmse", "kl", "worst")]
                for r in rows
            ],
            ["K"] + [f"{label} ({o})" for o in ("exp-rmse", "softmax") for label in ("RMSE", "KL", "worst")],
        )
    )
    if plot:
        click.echo(f"plot written to {plot}")
