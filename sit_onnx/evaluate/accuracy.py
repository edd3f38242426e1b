"""Top-1 accuracy of an original and a converted model on the same labelled data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.batching import feed_rows, run_in_batches
from sit_onnx.evaluate.inputs import check_feeds
from sit_onnx.runtime.session import run_session


@dataclass
class AccuracyReport:
    samples: int
    ann_accuracy: float
    converted_accuracy: float | None = None
    agreement: float | None = None

    @property
    def loss_points(self) -> float | None:
        """Conversion loss in percentage points (positive = the converted model is worse)."""
        if self.converted_accuracy is None:
            return None
        return 100 * (self.ann_accuracy - self.converted_accuracy)


NEEDS = "accuracy needs (batch, classes) logits or (batch,) integer labels"


def predict(
    session: ort.InferenceSession,
    arrays: dict[str, np.ndarray],
    source: str,
    batch: int = 256,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Class predictions (argmax of the first output; the output itself where it is already a label
    per row, an ArgMax in the graph), run in batches. `labels`, given, must name the output's classes."""
    rows = feed_rows(session, arrays)
    feeds = check_feeds(session, arrays, source, rows)
    predictions = []
    for count, outputs in run_in_batches(session, feeds, rows, batch, lambda part: run_session(session, part, source)):
        logits = outputs[0]
        if not isinstance(logits, np.ndarray):  # a ragged sequence or maps (runtime/session.py stacks the rest)
            raise SitOnnxError(f"the model's first output is a sequence; {NEEDS}")
        labelled = logits.ndim == 1 and np.issubdtype(logits.dtype, np.integer)  # an ArgMax in the graph
        if logits.ndim != 2 and not labelled:
            raise SitOnnxError(f"the model's first output has shape {list(logits.shape)}; {NEEDS}")
        if logits.shape[0] != count:  # a table the model holds, not a row per input row
            raise SitOnnxError(f"the model's first output has shape {list(logits.shape)} for {count} rows; {NEEDS}")
        if labelled:
            predictions.append(logits)
            continue
        if labels is not None and not predictions:
            check_labels(labels, logits.shape[1], source)
        predictions.append(np.argmax(logits, axis=1))
    return np.concatenate(predictions) if predictions else np.zeros(0, np.int64)


def check_labels(labels: np.ndarray, classes: int, source: str) -> None:
    """Labels the first output cannot predict (1-based ones, another model's) scored 0% in silence."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise SitOnnxError(
            f"{source}: 'labels' run from {low} to {high}, but the model's first output has {classes} "
            f"classes (0..{classes - 1})"
        )


def accuracy_report(labels: np.ndarray, ann: np.ndarray, converted: np.ndarray | None) -> AccuracyReport:
    report = AccuracyReport(len(labels), float(np.mean(ann == labels)) if len(labels) else 0.0)
    if converted is not None:
        report.converted_accuracy = float(np.mean(converted == labels)) if len(labels) else 0.0
        report.agreement = float(np.mean(converted == ann)) if len(labels) else 0.0
    return report
