"""The paper's layer-by-layer experiment (Tables 2-4): convert the first n softmax sites, n = 0..all,
and measure accuracy against the original's predictions at each step; on data without labels,
the first output's argmax agreement and cosine against the original's. With `--activations`, every
activation is converted in every row, row 0 included (softmax sites none, activations all)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import onnx

from sit_onnx.evaluate.accuracy import accuracy_report, predict
from sit_onnx.evaluate.compare import ARGMAX
from sit_onnx.evaluate.datasets import LabelledData
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime import SessionSpec, make_session


@dataclass
class LayerRow:
    converted_sites: int
    last_site: str  # "-" for the original
    accuracy: float | None  # None without labels
    loss_points: float | None
    agreement: float | None  # argmax of the first output (judge.py's axis), None when nothing decides
    cosine: float | None = None  # of the first output against the original's (label-free mode)
    agreement_of: str = ARGMAX  # VALUES: an integer first output's share of equal values (compare.py)
    argmax_axis: int | None = None  # label-free: the axis `agreement` is taken along (-3: an image map's pixels)


def layer_sweep(
    original: onnx.ModelProto,
    options: RewriteOptions,
    data: LabelledData,
    spec: SessionSpec = SessionSpec(),
    progress: Callable[[int], None] | None = None,
) -> list[LayerRow]:
    """One row per number of converted sites, in graph order; row 0 is the original itself, or
    with activations asked for, the model with its activations alone converted."""
    if data.labels is None:
        return _label_free_sweep(original, options, data, spec, progress)
    ann = predict(make_session(original, spec), data.arrays, data.source, labels=data.labels)
    rows = []
    for n, site, converted in _steps(original, options):
        predictions = ann if converted is None else predict(make_session(converted, spec), data.arrays, data.source)
        report = accuracy_report(data.labels, ann, predictions)
        rows.append(LayerRow(n, site, report.converted_accuracy, report.loss_points, report.agreement))
        if progress:
            progress(1)
    return rows


def _steps(original: onnx.ModelProto, options: RewriteOptions):
    """(n, the n-th converted site, the model with the first n converted sites converted; None for the
    original itself), n = 0..every site the options convert (--attention-only leaves some out)."""
    _, full = rewrite_model(original, options)
    names = [s.name for s in full.sites if s.converted]
    for n in range(len(names) + 1):
        if n == 0 and not options.activations:
            yield 0, "-", None
        elif n == 0:
            yield 0, "- (activations only)", rewrite_model(original, replace(options, first=0))[0]
        else:
            yield n, names[n - 1], rewrite_model(original, replace(options, nodes=tuple(names[:n])))[0]


def _first_output(model: onnx.ModelProto, data: LabelledData, spec: SessionSpec) -> tuple[str, np.ndarray]:
    """The name of the model's first output and its value on every row of the data."""
    from sit_onnx.evaluate.experiment import run_all

    session = make_session(model, spec)
    name = session.get_outputs()[0].name
    return name, run_all(session, data.arrays, data.source, batch=256)[name]


def _label_free_sweep(original, options, data, spec, progress) -> list[LayerRow]:
    """The first output judged as `compare` judges it (judge.py): a saliency map by its cosine
    alone, a segmentation per pixel, a detector by its detections' cosine (no argmax of its rows)."""
    from sit_onnx.evaluate.judge import OutputJudge

    name, reference = _first_output(original, data, spec)
    judge = OutputJudge({name: reference}, data.arrays, original)
    rows = []
    for n, site, converted in _steps(original, options):
        model = original if converted is None else converted
        result = judge.compared_one(name, _first_output(model, data, spec)[1])
        rows.append(
            LayerRow(n, site, None, None, result.agreement, result.cosine, result.agreement_of, result.argmax_axis)
        )
        if progress:
            progress(1)
    return rows
