"""The paper's layer-by-layer experiment (Tables 2-4): convert the first n softmax sites, n = 0..all,
and measure accuracy against the original's predictions at each step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import onnx

from sit_onnx.evaluate.accuracy import accuracy_report, predict
from sit_onnx.evaluate.datasets import LabelledData
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime import SessionSpec, make_session


@dataclass
class LayerRow:
    converted_sites: int
    last_site: str  # "-" for the original
    accuracy: float
    loss_points: float
    agreement: float


def layer_sweep(
    original: onnx.ModelProto,
    options: RewriteOptions,
    data: LabelledData,
    spec: SessionSpec = SessionSpec(),
    progress: Callable[[int], None] | None = None,
) -> list[LayerRow]:
    """One row per number of converted sites, in graph order; row 0 is the original itself."""
    ann = predict(make_session(original, spec), data.arrays, data.source)
    _, full = rewrite_model(original, options)
    rows = []
    for n in range(len(full.sites) + 1):
        if n == 0:
            predictions, site = ann, "-"
        else:
            converted, _ = rewrite_model(original, replace(options, first=n))
            predictions, site = predict(make_session(converted, spec), data.arrays, data.source), full.sites[n - 1].name
        report = accuracy_report(data.labels, ann, predictions)
        rows.append(LayerRow(n, site, report.converted_accuracy, report.loss_points, report.agreement))
        if progress:
            progress(1)
    return rows
