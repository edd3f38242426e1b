"""How far each converted site's output is from the exact softmax of the same logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

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
    """Only main-graph sites can be read out; subgraph sites are left out."""
    sites = [s for s in report.converted if s.graph == "main" and s.logits and s.output]
    values = capture(converted, [name for s in sites for name in (s.logits, s.output)], feeds)
    errors = []
    for site in sites:
        logits, got = values[site.logits].astype(np.float64), values[site.output].astype(np.float64)
        exact = softmax(logits, axis=site.axis)
        diff = np.abs(exact - got)
        errors.append(SiteError(site.name, float(diff.max()), float(diff.mean()), mean_kl(exact, got, site.axis)))
    return errors
