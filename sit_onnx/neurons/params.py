"""Fitted SI-exp parameter sets: a typed record, JSON on disk, validated on load.

A set holds the per-step thresholds T(t), resets h(t) and output weights d(t) of
one SI-exp neuron, the input range it was fitted on, and how well it fits there.
An ensemble set (`offsets` of length M > 1) sums M neurons that share T and h, each
fed `x + offset_j` and with its own K weights: `weights` then holds M*K values.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from sit_onnx.atomic import write_text_atomic
from sit_onnx.domain import MAX_STEPS
from sit_onnx.errors import SitOnnxError, first_line

FLOAT32_MAX = 3.4028234663852886e38  # the kernels and function bodies hold parameters as float32
FORMAT = "sit-onnx/si-exp-params"
FORMAT_VERSION = 1
ACTIVATION_FORMAT = "sit-onnx/activation-params"  # neurons/activation.py's files, named here to tell the two apart
PAPER_RANGE = (-1.0, 1.0)
SHIFT_RANGE = (-12.0, 0.0)
SHIPPED_STEPS = (4, 6, 8, 10, 12, 14, 16)


@dataclass(frozen=True)
class NeuronParams:
    """One SI-exp neuron: `v=x; z=H(v-T(t)); v-=h(t)z; out+=d(t)z` for t=1..K."""

    thresholds: tuple[float, ...]
    resets: tuple[float, ...]
    weights: tuple[float, ...]
    input_range: tuple[float, float]
    rmse: float = float("nan")
    max_error: float = float("nan")
    method: str = "unknown"
    meta: dict = field(default_factory=dict)
    offsets: tuple[float, ...] = (0.0,)

    def __post_init__(self):
        for name in ("thresholds", "resets", "weights", "offsets"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "input_range", tuple(float(v) for v in self.input_range))
        _check(self)

    @property
    def steps(self) -> int:
        return len(self.thresholds)

    @property
    def neurons(self) -> int:
        return len(self.offsets)

    def neuron_weights(self, j: int) -> tuple[float, ...]:
        """The K output weights d(t) of ensemble member j."""
        return self.weights[j * self.steps : (j + 1) * self.steps]

    def to_json(self) -> str:
        record = {"format": FORMAT, "version": FORMAT_VERSION, "steps": self.steps, **asdict(self)}
        return json.dumps(record, indent=2, allow_nan=True) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(Path(path), self.to_json())


def _check(p: NeuronParams) -> None:
    k = len(p.thresholds)
    if not 1 <= k <= MAX_STEPS:
        raise SitOnnxError(f"parameter set has {k} steps; SpikingExp supports 1 to {MAX_STEPS}")
    m = len(p.offsets)
    if not 1 <= m <= MAX_STEPS:
        raise SitOnnxError(f"parameter set has {m} offsets; an ensemble has 1 to {MAX_STEPS} neurons")
    if len(p.resets) != k or len(p.weights) != k * m:
        raise SitOnnxError(
            f"parameter set lengths differ: thresholds {k}, resets {len(p.resets)}, weights {len(p.weights)}"
            + (f" (expected {k * m} for {m} neurons)" if m > 1 else "")
        )
    values = p.thresholds + p.resets + p.weights + p.offsets
    if not all(math.isfinite(v) for v in values):
        raise SitOnnxError("parameter set holds a NaN or infinite threshold, reset or weight")
    if any(abs(v) > FLOAT32_MAX for v in values):
        raise SitOnnxError("parameter set holds a value beyond float32's range (|v| > 3.4e38), which the ops store")
    lo, hi = p.input_range if len(p.input_range) == 2 else (math.nan, math.nan)
    if len(p.input_range) != 2 or not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SitOnnxError(f"parameter set input_range must be two finite numbers LO < HI, got {list(p.input_range)}")


def _number(record: dict, key: str) -> float:
    """An optional float field (rmse, max_error): a number or null; anything else is refused (the
    caller names the file)."""
    value = record.get(key)
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SitOnnxError(f"{key} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise SitOnnxError(f"{key} is too large for a float") from None


def params_from_json(text: str, source: str = "<string>") -> NeuronParams:
    """Parse and validate a parameter file's text; every problem is one SitOnnxError line."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SitOnnxError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise SitOnnxError(f"{source}: not a sit-onnx parameter file (JSON nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer literal of more digits than Python converts
        raise SitOnnxError(f"{source}: not a usable parameter file ({first_line(exc)})") from None
    if isinstance(record, dict) and record.get("format") == ACTIVATION_FORMAT:
        raise SitOnnxError(
            f"{source}: an activation set ({record.get('function')}), not an SI-exp parameter set; "
            "activation sets go to --activation-params (`neuron show`: with --function)"
        )
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SitOnnxError(f'{source}: not a sit-onnx parameter file (expected "format": "{FORMAT}")')
    if record.get("version") != FORMAT_VERSION:
        raise SitOnnxError(
            f"{source}: parameter file version {record.get('version')!r}, this sit-onnx reads {FORMAT_VERSION}"
        )
    missing = [k for k in ("thresholds", "resets", "weights", "input_range") if k not in record]
    if missing:
        raise SitOnnxError(f"{source}: parameter file lacks {', '.join(missing)}")
    meta = record.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise SitOnnxError(f"{source}: meta must be an object, got {type(meta).__name__}")
    for key in ("thresholds", "resets", "weights", "input_range", "offsets"):
        value = record.get(key, [0.0])
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise SitOnnxError(f"{source}: {key} must be a list of numbers")
    try:
        params = NeuronParams(
            thresholds=record["thresholds"],
            resets=record["resets"],
            weights=record["weights"],
            input_range=record["input_range"],
            rmse=_number(record, "rmse"),
            max_error=_number(record, "max_error"),
            method=str(record.get("method", "unknown")),
            meta=dict(meta or {}),
            offsets=record.get("offsets", [0.0]),
        )
    except SitOnnxError as exc:
        raise SitOnnxError(f"{source}: {exc}") from None
    except OverflowError:  # an integer too large for a float
        raise SitOnnxError(f"{source}: a threshold, reset or weight is too large for a float") from None
    if "steps" in record and record["steps"] != params.steps:
        raise SitOnnxError(f"{source}: says steps={record['steps']} but holds {params.steps} thresholds")
    return params


def read_set_file(path: Path, kind: str = "parameter") -> str:
    """A set file's text, or one SitOnnxError line saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SitOnnxError(f"{path}: {kind} file not found") from None
    except IsADirectoryError:
        raise SitOnnxError(f"{path}: a folder, where a JSON {kind} set was expected") from None
    except PermissionError:
        raise SitOnnxError(f"{path}: cannot read {kind} file (permission denied)") from None
    except UnicodeDecodeError:  # said in words: the exception's name was the message
        raise SitOnnxError(f"{path}: {kind} file is not UTF-8 text (a JSON set is)") from None


def load_params(path: str | os.PathLike) -> NeuronParams:
    return params_from_json(read_set_file(Path(path)), str(path))


OBJECTIVES = ("exp-rmse", "softmax")
# Sets fitted to the softmax row error ship for the max-shift range only: there the row maximum is
# exactly 0, which the objective relies on. The paper's range keeps its exp-RMSE sets.
SOFTMAX_SHIPPED_RANGE = SHIFT_RANGE


def default_objective(input_range: tuple[float, float]) -> str:
    """What the shipped set for a range was fitted to, unless asked otherwise."""
    return "softmax" if tuple(input_range) == SOFTMAX_SHIPPED_RANGE else "exp-rmse"


def shipped_name(steps: int, input_range: tuple[float, float], objective: str = "exp-rmse") -> str:
    lo, hi = input_range
    prefix = "softmax" if objective == "softmax" else "si_exp"
    return f"{prefix}_k{steps}_{lo:g}_{hi:g}.json"


def _shipped_steps(input_range: tuple[float, float], objective: str) -> str:
    """The K values shipped for this range and objective, as a user would ask for them."""
    folder = resources.files("sit_onnx.neurons") / "data"
    names = {p.name for p in folder.iterdir()}
    found = [k for k in range(1, 65) if shipped_name(k, tuple(input_range), objective) in names]
    return "K = " + ", ".join(map(str, found)) if found else "none"


def shipped_params(
    steps: int = 12, input_range: tuple[float, float] = PAPER_RANGE, objective: str | None = None
) -> NeuronParams:
    """The parameter set fitted and shipped with sit-onnx for K=`steps` on `input_range`, fitted to
    `objective` (default: softmax rows on the max-shift range, exp's RMSE on the paper's range)."""
    objective = objective or default_objective(input_range)
    if objective not in OBJECTIVES:
        raise SitOnnxError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    name = shipped_name(steps, tuple(input_range), objective)
    resource = resources.files("sit_onnx.neurons") / "data" / name
    if not resource.is_file():
        raise SitOnnxError(
            f"no shipped parameter set for K={steps} on {list(input_range)} fitted to {objective}; "
            f"shipped there: {_shipped_steps(input_range, objective)} (`sit-onnx neuron fit` fits others)"
        )
    return params_from_json(resource.read_text(encoding="utf-8"), name)
