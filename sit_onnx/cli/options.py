"""Option pieces shared by several subcommands, so flags are declared once."""

from __future__ import annotations

import json
import math

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table.")


def range_option(default=None, help_text="Input range LO HI the neuron is fitted on."):
    return click.option("--range", "input_range", type=(float, float), default=default, metavar="LO HI",
                        help=help_text)


def check_range(input_range) -> tuple[float, float]:
    lo, hi = input_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise click.BadParameter(f"need finite LO < HI, got {lo:g} {hi:g}", param_hint="--range")
    return (lo, hi)


def emit_json(record) -> None:
    click.echo(json.dumps(record, allow_nan=False, default=_nan_safe))


def _nan_safe(value):
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
