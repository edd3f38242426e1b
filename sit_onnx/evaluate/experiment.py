"""The steps every evaluation command shares: load a model, convert it (or load a converted
file), run both on labelled data."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.accuracy import AccuracyReport, accuracy_report, predict
from sit_onnx.evaluate.batching import feed_rows, join_batches, run_in_batches
from sit_onnx.evaluate.datasets import LabelledData, fed_whole, load_labelled
from sit_onnx.evaluate.seeding import seed_random_ops
from sit_onnx.evaluate.signature import check_same_inputs
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.load import check_model_path, load_model
from sit_onnx.graph.report import RewriteReport
from sit_onnx.runtime import SessionSpec, make_session


@dataclass
class ModelPair:
    original: onnx.ModelProto
    converted: onnx.ModelProto | None
    report: RewriteReport | None  # None when the converted model came from a file


def load_pair(
    model_path: str | os.PathLike, converted_path: str | os.PathLike | None, options: RewriteOptions | None
) -> ModelPair:
    """The original model and its conversion: from `converted_path`, else converted in memory with
    `options`; their random ops seeded alike (seeding.py), so both draw the same noise."""
    if converted_path is not None:
        check_model_path(converted_path)  # before the original's weights are read
    original = load_model(model_path)
    seed_random_ops(original)
    if converted_path is not None:
        converted = load_model(converted_path)
        hint = f" (--converted takes {model_path} converted)"
        check_same_inputs(original, converted, (str(model_path), str(converted_path)), hint=hint)
        seed_random_ops(converted)
        return ModelPair(original, converted, None)
    if options is None:
        return ModelPair(original, None, None)
    converted, report = rewrite_model(original, options, source=str(model_path))
    return ModelPair(original, converted, report)


def first_input_name(model: onnx.ModelProto) -> str:
    fed = _input_names(model)
    names = [i.name for i in model.graph.input if i.name in fed]
    if not names:
        raise SitOnnxError("the model has no inputs to feed")
    return names[0]


def fixed_inputs(model: onnx.ModelProto) -> dict[str, int | None]:
    """Model inputs declared with every dim a number, by their first dim (None for a scalar, declared
    with no dims): such an input (a merged decoder's `use_cache_branch` [1], a temperature [])
    may be one array for all rows, fed whole with every batch."""
    fixed = {}
    for value in model.graph.input:
        tensor = value.type.tensor_type
        dims = tensor.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            fixed[value.name] = dims[0].dim_value
        elif tensor.HasField("shape") and not dims:  # no dims declared; no shape at all: rank unknown
            fixed[value.name] = None
    return fixed


def _input_names(model: onnx.ModelProto) -> set[str]:
    initializers = {t.name for t in model.graph.initializer}
    return {i.name for i in model.graph.input if i.name not in initializers}


def labelled_data(model: onnx.ModelProto, data, dataset) -> LabelledData:
    return load_labelled(data, dataset, first_input_name(model), whole=fixed_inputs(model), inputs=_input_names(model))


def input_data(model: onnx.ModelProto, data, dataset) -> LabelledData:
    """Model inputs for commands that need no labels (calibrate, energy): any number of named
    inputs of any dtype; `labels` is read if present, not required."""
    return load_labelled(
        data,
        dataset,
        first_input_name(model),
        require_labels=False,
        whole=fixed_inputs(model),
        inputs=_input_names(model),
    )


def evaluate_accuracy(
    pair: ModelPair, data: LabelledData, spec: SessionSpec = SessionSpec(), batch: int = 256
) -> AccuracyReport:
    ann = predict(make_session(pair.original, spec), data.arrays, data.source, batch, data.labels)
    converted = predict(make_session(pair.converted, spec), data.arrays, data.source, batch) if pair.converted else None
    return accuracy_report(data.labels, ann, converted)


def run_all(
    session, arrays: dict[str, np.ndarray], source: str, batch: int, tick=lambda rows: None
) -> dict[str, np.ndarray]:
    """Every output of `session` on every row of the data, run `batch` rows at a time."""
    from sit_onnx.evaluate.compare import check_comparable
    from sit_onnx.evaluate.inputs import check_feeds
    from sit_onnx.runtime.session import run_session

    rows = feed_rows(session, arrays)
    feeds = check_feeds(session, arrays, source, rows)
    parts = []
    for count, outputs in run_in_batches(session, feeds, rows, batch, lambda part: run_session(session, part, source)):
        parts.append((count, outputs))
        tick(count)
    outputs = join_batches([o.name for o in session.get_outputs()], parts) if parts else {}
    check_comparable(outputs, "the model")
    return outputs


def evaluate_outputs(pair: ModelPair, data: LabelledData, spec: SessionSpec, batch: int = 256, tick=lambda rows: None):
    """Label-free figures for unlabelled data: per output of the original, the converted model's
    argmax agreement, cosine and errors (compare's statistics, on every row of the data), each
    output judged as `compare` judges it (judge.py)."""
    from sit_onnx.evaluate.judge import OutputJudge

    reference = run_all(make_session(pair.original, spec), data.arrays, data.source, batch, tick)
    converted = run_all(make_session(pair.converted, spec), data.arrays, data.source, batch, tick)
    missing = sorted(set(reference) - set(converted))
    if missing:
        raise SitOnnxError(f"the converted model lacks the outputs {', '.join(missing)}")
    return OutputJudge(reference, data.arrays, pair.original).compared(converted)


def sample_feeds(model: onnx.ModelProto, data: LabelledData, count: int = 64) -> dict[str, np.ndarray]:
    """The first `count` rows of the data, checked against the model's inputs. An input of fixed
    shape given whole (a batch of 4 for a model declared [4, 6]) stays whole: cut, it could not run."""
    from sit_onnx.evaluate.inputs import check_feeds

    whole = fed_whole(data.arrays, fixed_inputs(model))
    session = make_session(model, SessionSpec(use_library=False, verify_kernels=False))
    cut = {k: v if k in whole or not v.ndim else v[:count] for k, v in data.arrays.items()}
    return check_feeds(session, cut, data.source, feed_rows(session, cut))
