"""Detections compared as a detector's user sees them: boxes kept after the score threshold (and
NMS), matched one to one by class and overlap.

An Ultralytics YOLO export says what it is in its metadata (`task: detect`, `names`, `end2end`).
Its raw head, [N, 4 + classes, anchors] (box centre and size, then class scores, per anchor of the
8/16/32 strides), decides nothing along its last axis: an argmax over 8,400 anchors per channel
flips between neighbouring anchors of one object. Its end-to-end head, [N, 300, 6] (corners, score,
class: the top 300 with no NMS), is sorted by score, so a tiny change of a low score reorders rows
and the element-wise cosine falls with no detection lost. Both are judged by their detections.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import onnx

SCORE_THRESHOLD = 0.25  # Ultralytics' default `conf` for predictions
NMS_IOU = 0.7  # Ultralytics' default `iou` for NMS
MATCH_IOU = 0.5  # the overlap at which a candidate box counts as the same detection
MAX_DETECTIONS = 300
STRIDE_SETS = ((8, 16, 32), (8, 16, 32, 64), (4, 8, 16, 32))  # P3-P5, P3-P6, P2-P5 heads
CLASS_OFFSET = 7680.0  # class-aware NMS as Ultralytics does it: boxes of each class moved apart


@dataclass(frozen=True)
class DetectionHead:
    """How an output holds detections: 'raw' ([N, 4 + classes, anchors]) or 'end2end' ([N, K, 6])."""

    kind: str
    classes: int


@dataclass
class DetectionFigures:
    reference: int  # detections of the reference at or above the score threshold, over the batch
    candidate: int
    matched: int  # one-to-one pairs of the same image and class overlapping by MATCH_IOU or more
    mean_iou: float | None  # of the matched pairs
    kind: str = "raw"  # the head's (DetectionHead.kind)
    score_threshold: float = SCORE_THRESHOLD

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.candidate if self.candidate else 1.0


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _class_count(names: str) -> int | None:
    try:
        parsed = ast.literal_eval(names)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return len(parsed) if isinstance(parsed, (dict, list)) and parsed else None


def _anchors(height: int, width: int) -> set[int]:
    """Anchor counts of the usual stride sets for an input of this size (Ultralytics pads up)."""
    return {sum(-(-height // s) * -(-width // s) for s in strides) for strides in STRIDE_SETS}


def detection_head(
    model: onnx.ModelProto, shape: tuple[int, ...], images: set[tuple[int, int]]
) -> DetectionHead | None:
    """The output's detection layout, where the model's metadata says it is an Ultralytics detector
    and the shape fits it; None for every other output."""
    meta = _metadata(model)
    classes = _class_count(meta.get("names", ""))
    if meta.get("task") != "detect" or classes is None or len(shape) != 3:
        return None
    if meta.get("end2end") == "True" and shape[-1] == 6:
        return DetectionHead("end2end", classes)
    if shape[1] == 4 + classes and any(shape[2] in _anchors(h, w) for h, w in images):
        return DetectionHead("raw", classes)
    return None


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Overlap (intersection over union) of one x1 y1 x2 y2 box with each of `boxes`."""
    top_left, bottom_right = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    union = area(box) + area(boxes) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Indices kept by class-aware NMS, best score first, at most MAX_DETECTIONS."""
    moved = boxes + (classes * CLASS_OFFSET)[:, None]
    order, kept = np.argsort(-scores, kind="stable"), []
    while order.size and len(kept) < MAX_DETECTIONS:
        best, order = order[0], order[1:]
        kept.append(best)
        order = order[_iou(moved[best], moved[order]) <= NMS_IOU]
    return np.array(kept, dtype=np.int64)


def _decoded(rows: np.ndarray, head: DetectionHead) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes x1 y1 x2 y2, scores, classes) of one image's detections above the score threshold."""
    if head.kind == "end2end":
        keep = rows[:, 4] >= SCORE_THRESHOLD
        return rows[keep, :4], rows[keep, 4], rows[keep, 5].astype(np.int64)
    scores_by_class = rows[4:].T
    scores, classes = scores_by_class.max(axis=1), scores_by_class.argmax(axis=1)
    keep = scores >= SCORE_THRESHOLD
    centre, size = rows[:2, keep].T, rows[2:4, keep].T
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    kept = _nms(boxes, scores[keep], classes[keep])
    return boxes[kept], scores[keep][kept], classes[keep][kept]


def _matches(reference, candidate) -> list[float]:
    """IoU of each one-to-one match: the reference's detections, best score first, each take the
    unmatched candidate box of its class that overlaps it most, if by MATCH_IOU or more."""
    (ref_boxes, ref_scores, ref_classes), (boxes, _, classes) = reference, candidate
    free, found = np.ones(len(boxes), dtype=bool), []
    for i in np.argsort(-ref_scores, kind="stable"):
        usable = free & (classes == ref_classes[i])
        if not usable.any():
            continue
        overlap = np.where(usable, _iou(ref_boxes[i], boxes), -1.0)  # usable: some candidate box exists
        best = int(np.argmax(overlap))
        if overlap[best] >= MATCH_IOU:
            free[best] = False
            found.append(float(overlap[best]))
    return found


def compare_detections(reference: np.ndarray, candidate: np.ndarray, head: DetectionHead) -> DetectionFigures:
    """Detections of each image of the batch, matched between the two outputs."""
    counts, ious = [0, 0], []
    for ref_rows, cand_rows in zip(reference.astype(np.float64), candidate.astype(np.float64)):
        ref, cand = _decoded(ref_rows, head), _decoded(cand_rows, head)
        counts[0], counts[1] = counts[0] + len(ref[1]), counts[1] + len(cand[1])
        ious.extend(_matches(ref, cand))
    return DetectionFigures(counts[0], counts[1], len(ious), float(np.mean(ious)) if ious else None, head.kind)


def describe_detections(figures: DetectionFigures) -> str:
    line = (
        f"detections (score >= {figures.score_threshold:g}): reference {figures.reference}, candidate "
        f"{figures.candidate}, matched {figures.matched} (same class, IoU >= {MATCH_IOU:g}"
    )
    line += f"; mean IoU {figures.mean_iou:.4f})" if figures.mean_iou is not None else ")"
    if not figures.reference and not figures.candidate:
        line += "; no detection to compare on these inputs (real images show what the conversion changed)"
    return line
