"""A detector's output judged by its detections (Ultralytics YOLO exports: the raw head and the
end-to-end list): which outputs are heads, NMS, one-to-one matching, the verdict, and the command."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.evaluate.compare import approximately_equal, compare_arrays
from sit_onnx.evaluate.detections import (
    DetectionHead,
    _nms,
    compare_detections,
    describe_detections,
    detection_head,
)

NAMES = "{0: 'text', 1: 'table'}"


def _meta(**values) -> onnx.ModelProto:
    model = onnx.ModelProto()
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)
    return model


def test_raw_head_of_a_detector_is_recognised_by_metadata_and_anchor_count():
    model = _meta(task="detect", names=NAMES)
    assert detection_head(model, (1, 6, 8400), {(640, 640)}) == DetectionHead("raw", 2)  # 80² + 40² + 20²
    assert detection_head(model, (1, 6, 21504), {(1024, 1024)}) == DetectionHead("raw", 2)
    assert detection_head(model, (1, 6, 8400 + 100), {(640, 640)}) == DetectionHead("raw", 2)  # P6: + 10²
    assert detection_head(model, (1, 6, 6400 + 1600 + 400 + 25600), {(640, 640)}) == DetectionHead("raw", 2)  # P2
    assert detection_head(model, (1, 6, 9 * 9 + 5 * 5 + 3 * 3), {(65, 65)}) == DetectionHead("raw", 2)  # padded up
    assert detection_head(model, (1, 7, 8400), {(640, 640)}) is None  # not 4 + classes rows
    assert detection_head(model, (1, 6, 8401), {(640, 640)}) is None
    assert detection_head(model, (1, 6, 8400), {(320, 320)}) is None  # another image's anchors
    assert detection_head(model, (6, 8400), {(640, 640)}) is None


@pytest.mark.parametrize(
    "meta",
    [
        {"task": "segment", "names": NAMES},
        {"task": "detect"},
        {"task": "detect", "names": "{"},
        {"task": "detect", "names": "{}"},
        {"task": "detect", "names": "7"},
        {},
    ],
)
def test_other_models_have_no_detection_head(meta):
    assert detection_head(_meta(**meta), (1, 6, 8400), {(640, 640)}) is None


def test_end_to_end_head_needs_its_flag_and_six_columns():
    assert detection_head(_meta(task="detect", names=NAMES, end2end="True"), (2, 300, 6), set()) == DetectionHead(
        "end2end", 2
    )
    assert detection_head(_meta(task="detect", names=NAMES, end2end="False"), (2, 300, 6), set()) is None
    assert detection_head(_meta(task="detect", names=NAMES, end2end="True"), (2, 300, 7), set()) is None


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 7]], float)
    scores = np.array([0.6, 0.9, 0.5, 0.4, 0.3])
    classes = np.array([0, 0, 1, 0, 0])
    # box 1 beats box 0 (IoU 9/11 > 0.7); box 2 is of another class; box 4 overlaps box 1 by 63/110 <= 0.7
    assert _nms(boxes, scores, classes).tolist() == [1, 2, 3, 4]
    many = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(400)], float)
    assert len(_nms(many, np.linspace(1, 0.5, 400), np.zeros(400, int))) == 300


def _raw(objects, anchors=84, classes=2):
    """A raw head [1, 4 + classes, anchors]: each object (cx, cy, w, h, class, score) at its own anchor."""
    head = np.zeros((1, 4 + classes, anchors), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(objects):
        head[0, :4, i] = cx, cy, w, h
        head[0, 4 + cls, i] = score
    return head


def test_detections_are_matched_one_to_one_by_class_and_overlap():
    head = DetectionHead("raw", 2)
    reference = _raw([(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8), (5, 5, 4, 4, 0, 0.2)])
    moved = _raw([(21, 20, 10, 10, 0, 0.85), (40, 40, 10, 10, 1, 0.8), (5, 5, 4, 4, 0, 0.3)])
    found = compare_detections(reference, moved, head)
    assert (found.reference, found.candidate, found.matched) == (2, 3, 2)  # the 0.2 is under the threshold
    assert found.mean_iou == pytest.approx((90 / 110 + 1) / 2) and found.recall == 1 and found.precision == 2 / 3
    relabelled = _raw([(20, 20, 10, 10, 1, 0.9), (40, 40, 10, 10, 1, 0.8)])
    found = compare_detections(reference, relabelled, head)
    assert (found.matched, found.recall, found.precision) == (1, 0.5, 0.5)
    far = _raw([(20, 27, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)])  # IoU 30/170 < 0.5
    assert compare_detections(reference, far, head).matched == 1
    twice = _raw([(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8), (20, 20, 10, 10, 0, 0.7)])
    assert compare_detections(reference, twice, head).matched == 2  # NMS leaves one box per object


def test_end_to_end_detections_are_rows_of_corners_score_and_class():
    head = DetectionHead("end2end", 2)
    reference = np.zeros((2, 300, 6), np.float32)
    reference[0, 0] = [10, 10, 20, 20, 0.9, 1]
    reference[1, 0] = [30, 30, 50, 50, 0.7, 0]
    reference[1, 1] = [0, 0, 5, 5, 0.1, 0]
    swapped = reference.copy()
    swapped[1, [0, 1]] = swapped[1, [1, 0]]  # rows reordered: the same detections
    found = compare_detections(reference, swapped, head)
    assert (found.reference, found.candidate, found.matched, found.mean_iou, found.kind) == (2, 2, 2, 1.0, "end2end")
    lost = reference.copy()
    lost[1, 0, 4] = 0.2
    assert (compare_detections(reference, lost, head).matched, compare_detections(reference, lost, head).candidate) == (
        1,
        1,
    )


def _verdict(reference, candidate, head, min_cosine=0.999):
    r = compare_arrays("output0", reference, candidate, 0, 0, axis=None)
    r.detections = compare_detections(reference, candidate, head)
    return approximately_equal(r, min_cosine, 0.99)


def test_verdict_of_a_detector_is_its_detections():
    raw = DetectionHead("raw", 2)
    reference = _raw([(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)])
    assert _verdict(reference, _raw([(20.2, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)]), raw)
    assert not _verdict(reference, _raw([(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 0, 0.8)]), raw)
    assert not _verdict(reference, _raw([(20, 20, 10, 10, 0, 0.9)]), raw)  # one lost
    assert not _verdict(
        reference, _raw([(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8), (70, 9, 5, 5, 1, 0.5)]), raw
    )
    noisy = reference.copy()
    noisy[0, :4, 2:] = 500.0  # boxes at anchors whose scores stay 0: the same detections, a cosine of 0.007
    assert not _verdict(reference, noisy, raw) and _verdict(reference, noisy, raw, min_cosine=0.005)
    nothing = _raw([])
    assert _verdict(nothing, nothing, raw)  # no detection either side: nothing differs
    end2end = DetectionHead("end2end", 2)
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0], rows[0, 1] = [10, 10, 20, 20, 0.9, 1], [30, 30, 40, 40, 0.6, 0]
    reordered = rows[:, [1, 0] + list(range(2, 300))]
    assert _verdict(rows, reordered, end2end)  # its cosine is not asked for
    assert compare_arrays("output0", rows, reordered, 0, 0, axis=None).cosine < 0.999


def test_description_of_detections():
    head = DetectionHead("raw", 2)
    reference = _raw([(20, 20, 10, 10, 0, 0.9)])
    line = describe_detections(compare_detections(reference, reference, head))
    assert (
        line
        == "detections (score >= 0.25): reference 1, candidate 1, matched 1 (same class, IoU >= 0.5; mean IoU 1.0000)"
    )
    empty = describe_detections(compare_detections(_raw([]), _raw([]), head))
    assert empty.endswith(
        "matched 0 (same class, IoU >= 0.5); no detection to compare on these inputs "
        "(real images show what the conversion changed)"
    )


def _detector(path, head, **meta):
    """images [1, 3, 64, 64] -> output0 = head + 0 * mean(images): a fixed head, with YOLO metadata."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
            helper.make_node("Mul", ["m", "zero"], ["z"]),
            helper.make_node("Add", ["head", "z"], ["output0"]),
        ],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(head.shape))],
        [numpy_helper.from_array(head, "head"), numpy_helper.from_array(np.array(0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"task": "detect", "names": NAMES, **meta}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_compare_judges_a_detector_by_its_detections(tmp_path):
    objects = [(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)]
    reference = _detector(tmp_path / "a.onnx", _raw(objects))  # 64 x 64: 8² + 4² + 2² = 84 anchors
    near = objects[:]
    near[0] = (20.5, 20, 10, 10, 0, 0.9)
    moved = _detector(tmp_path / "b.onnx", _raw(near))
    result = CliRunner().invoke(main, ["compare", str(reference), str(moved)])
    assert result.exit_code == 0, result.output
    assert (
        "[output0] shape [1, 6, 84], approximate: cosine >= 0.999, detections matched >= 0.99 both ways"
        in result.output
    )
    assert "matched 2 (same class, IoU >= 0.5; mean IoU 0.9524)" in result.output and "argmax" not in result.output
    relabelled = _detector(tmp_path / "c.onnx", _raw([objects[0], (40, 40, 10, 10, 0, 0.8)]))
    failed = CliRunner().invoke(main, ["compare", str(reference), str(relabelled), "--json"])
    assert failed.exit_code == 1
    (output,) = json.loads(failed.stdout)["outputs"]
    assert output["detections"] == {
        "reference": 2,
        "candidate": 2,
        "matched": 1,
        "mean_iou": 1.0,
        "kind": "raw",
        "score_threshold": 0.25,
    }
    assert output["argmax_axis"] is None and output["agreement"] is None


def test_compare_without_metadata_judges_the_argmax_as_before(tmp_path):
    objects = [(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)]
    reference = _detector(tmp_path / "a.onnx", _raw(objects), task="classify")
    result = CliRunner().invoke(main, ["compare", str(reference), str(reference), "--json"])
    (output,) = json.loads(result.stdout)["outputs"]
    assert output["detections"] is None and output["argmax_axis"] == -1 and output["agreement"] == 1.0


def test_compare_of_an_end_to_end_detector_asks_no_cosine(tmp_path):
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0], rows[0, 1], rows[0, 2] = [10, 10, 20, 20, 0.9, 1], [30, 30, 40, 40, 0.6, 0], [1, 1, 9, 9, 0.01, 0]
    reordered = rows[:, [0, 2, 1] + list(range(3, 300))]
    reference = _detector(tmp_path / "a.onnx", rows, end2end="True")
    result = CliRunner().invoke(
        main, ["compare", str(reference), str(_detector(tmp_path / "b.onnx", reordered, end2end="True"))]
    )
    assert result.exit_code == 0, result.output
    assert "[output0] shape [1, 300, 6], approximate: detections matched >= 0.99 both ways" in result.output
    assert "reference 2, candidate 2, matched 2" in result.output


def test_edges_of_the_thresholds_and_the_matching_order():
    head = DetectionHead("raw", 2)
    at_threshold = _raw([(20, 20, 10, 10, 0, 0.25)])
    assert compare_detections(at_threshold, at_threshold, head).reference == 1  # a score of 0.25 counts
    exactly = np.array([[0, 0, 10, 10], [0, 0, 10, 7]], float)  # IoU 0.7: not above NMS's 0.7, both kept
    assert _nms(exactly, np.array([0.9, 0.8]), np.zeros(2, int)).tolist() == [0, 1]
    # one candidate box between two reference boxes of a class: the better-scored reference takes it
    reference = _raw([(5, 5, 10, 10, 0, 0.9), (7, 5, 10, 10, 0, 0.8)])
    found = compare_detections(reference, _raw([(7, 5, 10, 10, 0, 0.9)]), head)
    assert (found.reference, found.matched) == (2, 1) and found.mean_iou == pytest.approx(8 / 12)


def test_iou_of_boxes_of_every_shape():
    from sit_onnx.evaluate.detections import _iou

    box = np.array([0.0, 0.0, 4.0, 2.0])  # 4 wide, 2 high
    others = np.array(
        [
            [2.0, 0.0, 6.0, 2.0],  # half across: 4 / 12
            [0.0, 1.0, 4.0, 3.0],  # half down: 4 / 12
            [5.0, 0.0, 9.0, 2.0],  # apart: 0, not a negative overlap
            [0.0, 0.0, 0.5, 0.5],  # inside, tiny: 0.25 / 8
            [4.0, 2.0, 0.0, 0.0],  # corners swapped: no area
        ]
    )
    assert _iou(box, others) == pytest.approx([1 / 3, 1 / 3, 0.0, 0.25 / 8, 0.0])
    tiny = np.array([0.0, 0.0, 0.5, 0.5])  # a union under 1 pixel still has its overlap
    assert _iou(tiny, np.array([[0.0, 0.0, 0.5, 0.25]])) == pytest.approx([0.5])
    assert _iou(np.zeros(4), np.zeros((1, 4))).tolist() == [0.0]  # two points: no union, no overlap


def test_boxes_are_read_as_centre_width_and_height():
    head = DetectionHead("raw", 2)
    wide = _raw([(20, 10, 16, 4, 0, 0.9)])  # x 12..28, y 8..12
    shifted = _raw([(24, 10, 16, 4, 0, 0.9)])  # x 16..32: IoU 48 / 80
    found = compare_detections(wide, shifted, head)
    assert found.matched == 1 and found.mean_iou == pytest.approx(0.6)
    tall = _raw([(20, 10, 4, 16, 0, 0.9)])  # the same size turned: IoU 16 / 112, no match
    assert compare_detections(wide, tall, head).matched == 0


def test_end_to_end_edges():
    head = DetectionHead("end2end", 2)
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = [0, 0, 10, 10, 0.25, 0]  # at the threshold: counted
    assert compare_detections(rows, rows, head).reference == 1
    # two references of a class around one candidate: the better score takes it, whatever the row order
    reference = np.zeros((1, 300, 6), np.float32)
    reference[0, 0], reference[0, 1] = [2, 0, 12, 10, 0.8, 0], [0, 0, 10, 10, 0.9, 0]
    candidate = np.zeros((1, 300, 6), np.float32)
    candidate[0, 0] = [2, 0, 12, 10, 0.9, 0]
    assert compare_detections(reference, candidate, head).mean_iou == pytest.approx(8 / 12)
    half = candidate.copy()
    half[0, 0] = [0, 0, 10, 5, 0.9, 0]  # IoU exactly 0.5 with the 0.9 reference: a match
    assert compare_detections(reference[:, 1:], half, head).matched == 1


def test_counts_add_up_over_the_batch():
    head = DetectionHead("end2end", 2)
    reference = np.zeros((2, 300, 6), np.float32)
    reference[0, 0] = reference[1, 0] = [0, 0, 10, 10, 0.9, 0]
    candidate = reference.copy()
    candidate[0, 0, 4] = 0.1  # the first image's detection lost
    found = compare_detections(reference, candidate, head)
    assert (found.reference, found.candidate, found.matched) == (2, 1, 1)
    assert "no detection to compare" not in describe_detections(compare_detections(reference * 0, candidate, head))


def test_verdict_at_its_thresholds():
    raw = DetectionHead("raw", 2)
    reference = _raw([(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)])
    half = _raw([(20, 20, 10, 10, 0, 0.9)])
    r = compare_arrays("output0", reference, half, 0, 0, axis=None)
    r.detections = compare_detections(reference, half, raw)
    assert approximately_equal(r, -1.0, 0.5) and not approximately_equal(r, -1.0, 0.51)  # recall 0.5
    assert approximately_equal(r, r.cosine, 0.5) and not approximately_equal(r, np.nextafter(r.cosine, 2), 0.5)
