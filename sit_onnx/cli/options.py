"""Option pieces shared by several subcommands, so flags are declared once."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import click

provider_option = click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Execution provider; a missing one is an error.",
)
library_option = click.option(
    "--library/--no-library",
    "use_library",
    default=None,
    help="Require the custom-op kernels, or run the function fallback only (default: the kernels when built).",
)


def _give_op_libraries(ctx, param, value):
    from sit_onnx.runtime.op_libraries import give_libraries

    give_libraries(tuple(str(v) for v in value))


op_library_option = click.option(
    "--op-library",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    expose_value=False,
    callback=_give_op_libraries,
    help="A custom-op library the model needs besides sit-onnx's (repeatable; also SIT_ONNX_OP_LIBRARIES). "
    "onnxruntime-extensions' ops need none when that package is installed.",
)
converted_option = click.option(
    "--converted",
    type=click.Path(path_type=Path),
    default=None,
    help="An already converted model (default: convert MODEL in memory with the rewrite flags).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table."
)


def deploy_options(runtime: str):  # pragma: no mutate block
    """--no-library and --force, as the deploy commands (triton, genai) take them."""

    def apply(func):
        func = click.option("--force", is_flag=True, help="Replace the output folder if it exists.")(func)
        return click.option(
            "--no-library",
            is_flag=True,
            help=f"Do not ship the custom-op library: {runtime}'s onnxruntime runs the ops' function bodies.",
        )(func)

    return apply


def range_option(default=None, help_text="Input range LO HI the neuron is fitted on."):  # pragma: no mutate block
    """Run at import, as click declares options (mutation testing cannot reach it; the CLI tests do)."""
    return click.option("--range", "input_range", type=(float, float), default=default, metavar="LO HI", help=help_text)


def check_range(input_range) -> tuple[float, float]:
    lo, hi = input_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise click.BadParameter(f"need finite LO < HI, got {lo:g} {hi:g}", param_hint="--range")
    return (lo, hi)


def not_nan(ctx, param, value):
    """A click callback: FloatRange lets NaN through (every comparison with it is False)."""
    if value is not None and math.isnan(value):
        raise click.BadParameter("must be a number, not NaN")
    return value


def progress(desc: str, total=None, unit: str = "it"):  # pragma: no mutate block
    """A progress bar on a terminal only (tqdm's disable=None), cleared when done: display, not behaviour."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)


def emit_json(record) -> None:
    """One strict JSON object: NaN and ±inf (a converted model may legitimately output them) are
    written as null, since JSON has no numbers for them."""
    click.echo(json.dumps(finite_or_null(record), allow_nan=False, default=_not_serialisable))


def finite_or_null(value):
    """`value` with every non-finite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def json_constant(value: float | None):
    """An output's one value for --json: a number, or "nan", "inf", "-inf" as strings, since the null
    emit_json writes for them reads as "not constant" (an all-NaN output had said so)."""
    if value is None or math.isfinite(value):
        return value
    return str(value)  # Python spells them nan, inf, -inf


def _not_serialisable(value):
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def table(rows: list[list], header: list[str]) -> str:
    """A plain aligned text table (no dependency needed for a handful of rows)."""
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if value == value else "nan"
    return str(value)


def rewrite_options(func):  # pragma: no mutate block
    """The conversion flags, shared by `rewrite` and every command that converts on the fly."""
    decorators = [
        click.option("--steps", "-k", type=int, default=12, show_default=True, help="K of the shipped SI-exp set."),
        click.option(
            "--params",
            "params_file",
            type=click.Path(),
            default=None,
            help="A fitted parameter set (from `sit-onnx neuron fit`) instead of a shipped one.",
        ),
        click.option(
            "--objective",
            type=click.Choice(["softmax", "exp-rmse"]),
            default=None,
            help="Which shipped set: fitted to the softmax row error (the default with --shift) or to "
            "exp's RMSE (the paper's protocol; the only kind for --no-shift).",
        ),
        click.option(
            "--sigmoid",
            is_flag=True,
            help="Insert a Sigmoid before SpikingExp (the paper's Next-ViT/UniFormer path; changes the "
            "model, fine-tune after).",
        ),
        click.option(
            "--shift/--no-shift",
            default=True,
            show_default=True,
            help="Subtract the max along the axis first, so logits of any range land in the fitted range "
            "(--no-shift is the paper's mode, fitted on [-1, 1]).",
        ),
        click.option(
            "--time-steps",
            type=click.IntRange(0, 2**63 - 1),  # an int64 attribute of SpikingNorm
            default=0,
            show_default=True,
            help="SpikingNorm input spikes N; 0 = the paper's amplified closed form w/V_th.",
        ),
        click.option(
            "--attention-only",
            is_flag=True,
            help="Convert only the softmax of attention (weights that mix computed values, as the paper does); "
            "leave a classifier's, a router's or a spline's softmax as it is. The report gives each site's role.",
        ),
        click.option(
            "--fuse/--chain",
            default=None,
            help="One SpikingSoftmax node per site (the default; its function body is SpikingExp -> "
            "SpikingNorm), or the explicit chain [Sigmoid] [ReduceMax, Sub] SpikingExp SpikingNorm: same "
            "numbers, the chain 2-3x slower on CPU. Ensemble parameter sets always use the chain.",
        ),
        activations_option(
            "Also convert these activations to SpikingActivation (every form exporters write: Gelu, the Erf "
            "and tanh forms, com.microsoft Gelu/FastGelu/BiasGelu, x*Sigmoid(x), HardSwish, ...)."
        ),
        click.option(
            "--activation-params",
            multiple=True,
            type=click.Path(),
            metavar="FILE",
            help="A fitted activation set (`sit-onnx neuron fit --function ...`) instead of the shipped one "
            "for its function (repeatable).",
        ),
        click.option(
            "--activation-steps",
            type=click.IntRange(1, 64),
            default=None,
            help="K of the converted activations' neurons (default: -k). GELU's error outweighs softmax's: "
            "e.g. -k 12 --activation-steps 16.",
        ),
        click.option(
            "--activation-form",
            type=click.Choice(["direct", "gated"]),
            default="direct",
            show_default=True,
            help="direct: the neuron computes the activation, and the layer behind it is fed by spikes. "
            "gated: GELU, SiLU and HardSwish as x * gate(x), the neuron computing the gate (2-5x less "
            "error; the product is analog, so the layer behind it stays multiply-accumulates).",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def activations_option(help_text: str):  # pragma: no mutate block
    """`--activations LIST`: a comma list of activation names, or none (rewrite's flags, calibrate)."""
    from sit_onnx.neurons.activation import SITE_FUNCTIONS

    return click.option(
        "--activations",
        default="none",
        show_default=True,
        metavar="LIST",
        callback=activation_list,
        help=f"{help_text} A comma list of {', '.join(SITE_FUNCTIONS)}, or none.",
    )


def activation_list(ctx, param, value) -> tuple[str, ...]:
    from sit_onnx.errors import SitOnnxError
    from sit_onnx.graph.activations import parse_activations

    try:
        return parse_activations(value)
    except SitOnnxError as exc:
        raise click.BadParameter(str(exc)) from None


CONVERSION_NAMES = (
    "steps",
    "params_file",
    "objective",
    "sigmoid",
    "shift",
    "time_steps",
    "fuse",
    "attention_only",
    "activations",
    "activation_params",
    "activation_steps",
    "activation_form",
)
CONVERSION_FLAGS = {
    "steps": "-k/--steps",
    "params_file": "--params",
    "shift": "--shift/--no-shift",
    "fuse": "--fuse/--chain",
}


def flag_given(context, name: str) -> bool:
    """Whether the user gave option `name` (by its parameter name), so a flag that would go unused
    can be refused rather than dropped."""
    return context is not None and context.get_parameter_source(name) != click.core.ParameterSource.DEFAULT


def rewrite_options_from(kwargs: dict, converted=None, **extra):
    """Pop the shared conversion flags out of a command's kwargs into RewriteOptions. Flags that
    would be silently unused are refused: -k beside --params, any of them beside --converted."""
    from sit_onnx.graph.convert import RewriteOptions

    context = click.get_current_context(silent=True)
    if converted is not None:
        for name in CONVERSION_NAMES:
            if flag_given(context, name):
                flag = CONVERSION_FLAGS.get(name, "--" + name.replace("_", "-"))
                raise click.UsageError(f"{flag} converts MODEL; --converted gives a model converted already")
    params_file = kwargs.pop("params_file")
    if params_file and flag_given(context, "steps"):
        raise click.UsageError("-k/--steps picks a shipped set; --params brings its own K")  # was ignored
    return RewriteOptions(
        steps=kwargs.pop("steps"),
        params_file=str(params_file) if params_file else None,
        objective=kwargs.pop("objective"),
        sigmoid=kwargs.pop("sigmoid"),
        shift=kwargs.pop("shift"),
        time_steps=kwargs.pop("time_steps"),
        fuse=kwargs.pop("fuse"),
        attention_only=kwargs.pop("attention_only"),
        activations=kwargs.pop("activations"),
        activation_params=tuple(str(p) for p in kwargs.pop("activation_params")),
        activation_steps=kwargs.pop("activation_steps"),
        activation_form=kwargs.pop("activation_form"),
        **extra,
    )


data_options_list = [
    click.option("--data", type=click.Path(), default=None, help="An .npz with the model inputs and 'labels'."),
    click.option(
        "--dataset",
        type=click.Choice(["digits"]),
        default=None,
        help="A bundled data set: digits (scikit-learn's 8x8 digits, its fixed test split, shipped with sit-onnx).",
    ),
]


def data_options(func):  # pragma: no mutate block
    """--data and --dataset, checked (exactly one; the file there) before the command loads its model."""

    @functools.wraps(func)
    def checked(*args, **kwargs):
        from sit_onnx.evaluate.datasets import check_data_choice

        check_data_choice(kwargs.get("data"), kwargs.get("dataset"))
        return func(*args, **kwargs)

    for decorator in reversed(data_options_list):
        checked = decorator(checked)
    return checked
