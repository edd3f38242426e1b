"""Per-site calibration: each softmax site gets the parameter set that serves its own logits.

The original model runs on the data; each site's max-shifted logit rows are
collected and split in two halves. The shipped sets for K (fitted to softmax rows and to exp's
RMSE) are scored, the better one is polished for a few rounds on the first half (the softmax
objective, seconds per site), and the set that scores best on the second, held-out half is
chosen: its figures are what the report shows. Sites in the If branches the data takes are
calibrated too (a merged decoder's branches name their sites alike, so both branches' sites of a
name take its set); sites the data cannot reach (Loop/Scan bodies) keep the default set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import onnx

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.calibrate import WEIGHTLESS, site_logits
from sit_onnx.neurons.fit import FitOptions, SoftmaxTarget, fit_si_exp
from sit_onnx.neurons.objective import RowScore, rows_from_logits
from sit_onnx.neurons.params import OBJECTIVES, SHIFT_RANGE, NeuronParams, shipped_params

ROWS_PER_SITE = 1_500  # rows drawn per half: enough for a stable score, seconds to polish on
ELEMENTS_PER_SITE = 200_000  # fewer rows where rows are long: a polish's time goes with the elements
MIN_ROWS = 16  # (a CTC head's 6,625 classes: 30 rows, not 1,500; 240 of them took 4 minutes)


def rows_per_half(length: int) -> int:
    """How many rows of this length each half draws: ROWS_PER_SITE, unless that passes the
    element budget, never fewer than MIN_ROWS."""
    return min(ROWS_PER_SITE, max(MIN_ROWS, ELEMENTS_PER_SITE // max(length, 1)))


@dataclass
class SiteChoice:
    """What calibration found and chose for one site."""

    name: str
    axis: int
    rows: int
    length: int
    shifted_p01: float  # 1st percentile of the max-shifted logits that carry weight (the range in use)
    candidates: dict[str, dict] = field(default_factory=dict)  # label -> RowScore's figures and value
    chosen: str = ""
    params: NeuronParams | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "params"}


def _figures(score: RowScore) -> dict:
    return {**asdict(score), "value": score.value}


def choose_site_params(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    steps: int,
    rounds: int,
    progress: Callable[[int], None] | None = None,
) -> list[SiteChoice]:
    """One SiteChoice per site the data reaches, its `params` the set to convert it with."""
    choices = []
    for site, logits in site_logits(model, feeds):
        choices.append(_choose(site, logits, steps, rounds))
        if progress:
            progress(1)
    return choices


def _low_end(shifted: np.ndarray) -> float:
    """1st percentile of the max-shifted logits whose weight float32 can hold: a masked logit
    (-3.4e38, -1e4) has weight exactly 0, so it says nothing of the range the neuron must cover."""
    weighted = shifted[shifted > WEIGHTLESS]
    return float(np.percentile(weighted, 1)) if weighted.size else float("nan")


def _choose(site, logits: np.ndarray, steps: int, rounds: int) -> SiteChoice:
    """Polish on half of the site's rows, choose and report on the other half (held out)."""
    moved = np.moveaxis(logits, site.axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    flat = flat[np.isfinite(flat).any(axis=-1)]  # before the halves: a half of NaN rows alone has none
    if not len(flat):
        raise SitOnnxError(
            f"--calibrate: the data gives site {site.name!r} no finite logit (all NaN or infinite): "
            "it cannot tell what set serves it; check the data for NaN or infinite values"
        )
    limit = rows_per_half(flat.shape[-1])
    fit_rows = rows_from_logits(flat[0::2] if len(flat) > 1 else flat, -1, limit=limit)
    rows = rows_from_logits(flat[1::2] if len(flat) > 1 else flat, -1, limit=limit, seed=1)
    target = SoftmaxTarget(rows, SHIFT_RANGE)
    choice = SiteChoice(
        site.name,
        site.axis,
        rows.rows,
        int(np.bincount(rows.row).max()),
        _low_end(rows.x),
    )
    shipped = {f"shipped {objective}": shipped_params(steps, SHIFT_RANGE, objective) for objective in OBJECTIVES}
    scores = {label: target.row_score(p.thresholds, p.resets, p.weights) for label, p in shipped.items()}
    best = min(scores, key=lambda label: scores[label].value)
    candidates = dict(shipped)
    if rounds > 0:
        polished = fit_si_exp(
            FitOptions(
                steps=steps,
                input_range=SHIFT_RANGE,
                objective="softmax",
                rows=fit_rows,
                warm_start=shipped[best],
                polish_rounds=rounds,
            )
        )
        label = f"polished from {best}"
        scores[label] = target.row_score(polished.thresholds, polished.resets, polished.weights)
        candidates[label] = polished
    choice.candidates = {label: _figures(score) for label, score in scores.items()}
    choice.chosen = min(scores, key=lambda label: scores[label].value)
    choice.params = candidates[choice.chosen]
    return choice
