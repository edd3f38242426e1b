"""What each softmax site is fed on real data, and how to convert it.

For every softmax site the rewrite would convert (the same site finder: Softmax nodes of any
opset, hand-written softmax, those inside Attention ops and local functions): its logits, the share inside the
paper's fitted range [-1, 1] as they are, and the share inside the max-shift
range [-R, 0] after subtracting the row maximum; then a recommendation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from sit_onnx.evaluate.branches import take_branches
from sit_onnx.evaluate.capture import capture
from sit_onnx.graph.convert import find_canonical_sites
from sit_onnx.neurons.params import PAPER_RANGE, SHIFT_RANGE

NEGLIGIBLE = np.exp(SHIFT_RANGE[0])  # below -R after the shift, exp is under 6e-6: clamping there is harmless
# At or below this a max-shifted logit's e^x is at most float32's smallest subnormal: a masked position
# (an attention mask's -1e4 or -3.4e38), which says nothing of the range a neuron must cover.
WEIGHTLESS = float(np.log(np.finfo(np.float32).smallest_subnormal))


@dataclass
class SiteCalibration:
    name: str
    axis: int
    count: int
    min: float
    max: float
    p01: float  # min and the percentiles: of the logits that carry weight (masked ones left out)
    p50: float
    p99: float
    masked: float  # share of logits with no weight: e^(x - row max) below float32's smallest subnormal
    inside_paper_range: float  # share of logits in [-1, 1], unshifted
    inside_shift_range: float  # share of shifted logits in [-R, 0] (below it exp < e^-R and SI-exp gives 0)
    recommendation: str


def unreached(count: int, what: str) -> str:
    """'N WHATs lie where the data cannot be read out': sites in subgraphs whose values no run returns."""
    verb = "s lie" if count > 1 else " lies"
    return f"{count} {what}{verb} where the data cannot be read out (a Loop or Scan body, a generation op's subgraph)"


def site_logits(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[tuple]:
    """(site, its logits as float64) for every site the data reaches: the main graph's and those
    in the If branches the data takes (branches.py). Other subgraphs' values cannot be read out."""
    canonical, found = find_canonical_sites(model)
    taken_model, taken = take_branches(canonical, feeds)
    sites = [s for s in found if s.graph == "main" or s.graph in taken]
    values = capture(taken_model, [s.logits for s in sites], feeds)
    return [(site, values[site.logits].astype(np.float64)) for site in sites]


def calibrate(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[SiteCalibration]:
    """One entry per main-graph site."""
    return [_site_calibration(site, logits) for site, logits in site_logits(model, feeds)]


def _site_calibration(site, logits: np.ndarray) -> SiteCalibration:
    axis = site.axis
    with np.errstate(invalid="ignore"):
        shifted = logits - np.max(logits, axis=axis, keepdims=True) if logits.size else logits
    masked = shifted <= WEIGHTLESS
    live = logits[np.isfinite(logits) & ~masked]  # finite and carrying weight
    in_paper = float(np.mean((live >= PAPER_RANGE[0]) & (live <= PAPER_RANGE[1]))) if live.size else 0.0
    in_shift = float(np.mean((shifted >= SHIFT_RANGE[0]) | ~np.isfinite(shifted))) if shifted.size else 0.0
    q = np.percentile(live, [1, 50, 99]) if live.size else [np.nan] * 3
    return SiteCalibration(
        site.name,
        int(axis),
        int(logits.size),
        float(live.min(initial=np.inf)),
        float(live.max(initial=-np.inf)),
        float(q[0]),
        float(q[1]),
        float(q[2]),
        float(np.mean(masked)) if logits.size else 0.0,
        in_paper,
        in_shift,
        _recommend(in_paper, in_shift),
    )


def _recommend(in_paper: float, in_shift: float) -> str:
    if in_paper >= 0.99:
        return "paper mode works as is (--no-shift): logits already lie in [-1, 1]"
    advice = (
        f"--shift (default), K=12 (or fewer steps with `rewrite --calibrate`: a parameter set per site); "
        f"only {100 * in_paper:.0f}% of logits lie in [-1, 1], so the paper's mode needs --sigmoid and fine-tuning"
    )
    if in_shift < 0.99:
        advice += (
            f"; {100 * (1 - in_shift):.1f}% of shifted logits fall below {SHIFT_RANGE[0]:g}, where exp "
            f"< {NEGLIGIBLE:.0e} and SI-exp gives 0: harmless unless rows are very long"
        )
    return advice
