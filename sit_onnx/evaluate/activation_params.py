"""Activation calibration: each converted activation function gets the set that serves the inputs
it really sees.

The original model runs on the data; every main-graph site's inputs are pooled per function and
split in two halves. The shipped set for K is polished on the first half, its error weighted by
how often each part of the range occurs there (warm start: seconds), and the set with the lower
RMSE on the second, held-out half is chosen: its figures are what the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx

from sit_onnx.evaluate.capture import capture
from sit_onnx.graph.convert import find_canonical_activations
from sit_onnx.neurons.activation import (
    ActivationParams,
    activation_function,
    fit_activation,
    set_function,
    shipped_activation,
    site_exact,
    spiking_activation,
)

SAMPLES_PER_HALF = 200_000  # inputs drawn per half: a stable weighting, seconds to polish on
POLISH_ROUNDS = 10  # measured on ALBERT's GELU inputs at K=12: 5 rounds 0.01453, 10 0.01447, 20 0.01446 RMSE


@dataclass
class ActivationChoice:
    """What calibration found and chose for one activation function."""

    function: str
    sites: int
    samples: int
    p01: float
    p50: float
    p99: float
    inside_range: float  # share of the inputs inside the shipped set's range
    candidates: dict[str, dict] = field(default_factory=dict)  # label -> held-out rmse and max_error
    chosen: str = ""
    params: ActivationParams | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "params"}


def held_out_error(params: ActivationParams, x: np.ndarray) -> dict:
    """The site's error on x (a gate set's: of x * gate)."""
    err = spiking_activation(x, params).astype(np.float64) - site_exact(params.function, x)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "max_error": float(np.max(np.abs(err)))}


def choose_activation_params(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    functions: tuple[str, ...],
    steps: int,
    polish: bool = True,
    progress: Callable[[int], None] | None = None,
    gated: bool = False,
) -> list[ActivationChoice]:
    """One ActivationChoice per function with sites in the main graph; `params` the set to use
    (`gated`: the function's gate set, where it has one)."""
    pooled = _pooled_inputs(model, feeds, functions)
    choices = []
    for function in functions:
        if function in pooled:
            choices.append(_choose(function, set_function(function, gated), *pooled[function], steps, polish))
        if progress:
            progress(1)
    return choices


def activation_inputs(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], functions: tuple[str, ...]
) -> list[ActivationChoice]:
    """What each function's main-graph sites are fed (figures only, no set chosen): `calibrate`."""
    pooled = _pooled_inputs(model, feeds, functions)
    return [_describe(function, sites, _draw(x)) for function, (sites, x) in pooled.items()]


def _pooled_inputs(model, feeds, functions) -> dict[str, tuple[int, np.ndarray]]:
    """Per function with main-graph sites and finite inputs: (its site count, those inputs, as the
    function's set reads them: a Swish-beta's times beta)."""
    canonical, found = find_canonical_activations(model, set(functions))
    found = [f for f in found if f.graph == "main"]
    values = capture(canonical, sorted({f.x for f in found}), feeds)
    pooled = {}
    for function in functions:
        inputs = [f.neuron_input(values[f.x].reshape(-1).astype(np.float64)) for f in found if f.function == function]
        x = np.concatenate(inputs) if inputs else np.zeros(0)
        if np.isfinite(x).any():
            pooled[function] = (len(inputs), x[np.isfinite(x)])
    return pooled


def _draw(x: np.ndarray) -> np.ndarray:
    """At most two halves' worth of the inputs, in a seeded random order."""
    return np.random.default_rng(0).permutation(x)[: 2 * SAMPLES_PER_HALF]


def _describe(function: str, sites: int, x: np.ndarray) -> ActivationChoice:
    """Drawn inputs' figures: how many, percentiles, share in the function's shipped range."""
    lo, hi = activation_function(function).default_range
    return ActivationChoice(
        function,
        sites,
        int(x.size),
        *(float(v) for v in np.percentile(x, [1, 50, 99])),
        float(np.mean((x >= lo) & (x <= hi))),
    )


def _choose(function: str, set_name: str, sites: int, x: np.ndarray, steps: int, polish: bool) -> ActivationChoice:
    """`set_name`'s shipped set for `function`'s pooled inputs x, or that set polished on half of
    them, whichever errs less on the other half."""
    x = _draw(x)
    fit_half, held = (x[0::2], x[1::2]) if x.size > 1 else (x, x)
    shipped = shipped_activation(set_name, steps)
    lo, hi = shipped.input_range
    choice = _describe(function, sites, x)
    candidates = {"shipped": shipped}
    if polish:
        candidates["polished on the data"] = fit_activation(
            set_name, steps, (lo, hi), samples=fit_half, warm_start=shipped, polish_rounds=POLISH_ROUNDS
        )
    choice.candidates = {label: held_out_error(p, held) for label, p in candidates.items()}
    choice.chosen = min(choice.candidates, key=lambda label: choice.candidates[label]["rmse"])
    choice.params = candidates[choice.chosen]
    return choice
