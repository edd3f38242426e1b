"""How far each converted site's output is from the exact softmax of the same logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from sit_onnx.evaluate.branches import take_branches
from sit_onnx.evaluate.capture import capture
from sit_onnx.graph.report import RewriteReport
from sit_onnx.neurons import softmax
from sit_onnx.neurons.quality import mean_kl


@dataclass
class SiteError:
    name: str
    max_abs: float
    mean_abs: float
    kl: float  # mean KL(softmax || spiking) per row


def site_errors(converted: onnx.ModelProto, report: RewriteReport, feeds: dict[str, np.ndarray]) -> list[SiteError]:
    """The main graph's sites and those in the If branches the data takes; other subgraphs' sites
    cannot be read out and are left out."""
    taken_model, taken = take_branches(converted, feeds)
    sites = [s for s in report.converted if (s.graph == "main" or s.graph in taken) and s.logits and s.output]
    values = capture(taken_model, [name for s in sites for name in (s.logits, s.output)], feeds)
    errors = []
    for site in sites:
        logits, got = values[site.logits].astype(np.float64), values[site.output].astype(np.float64)
        exact = softmax(logits, axis=site.axis)
        diff = np.abs(exact - got)
        errors.append(SiteError(site.name, float(diff.max()), float(diff.mean()), mean_kl(exact, got, site.axis)))
    return errors
