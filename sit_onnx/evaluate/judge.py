"""How each output of a model is judged against its conversion: a detector's output by its
detections, a dense map of the input image per pixel over its channels (or, with one channel, by
its cosine alone), everything else by the argmax of its last axis. `compare`, and the label-free
figures of `eval` and `layers`, judge alike: a saliency map's rows of pixels are no decisions."""

from __future__ import annotations

import numpy as np
import onnx

from sit_onnx.evaluate.compare import OutputComparison, compare_arrays, decision_axis, image_sizes
from sit_onnx.evaluate.detections import compare_detections, detection_head
from sit_onnx.evaluate.generation_inputs import sampled_outputs


class OutputJudge:
    """Per reference output: its detection head, else the axis its argmax decides along (None:
    nothing decides); the same judging for the candidate and for the noise floor."""

    def __init__(self, ref_out: dict, feeds: dict, model: onnx.ModelProto, min_margin: float = 0.0):
        images = image_sizes(feeds)
        self.ref_out, self.min_margin = ref_out, min_margin
        self.sampled = sampled_outputs(model)
        self.heads = {name: detection_head(model, ref.shape, images) for name, ref in ref_out.items()}
        self.axes = {
            name: None if self.heads[name] else decision_axis(ref.shape, images) for name, ref in ref_out.items()
        }

    def compared(self, other: dict, atol: float = 0.0, rtol: float = 0.0) -> list[OutputComparison]:
        """Every reference output against `other`'s output of the same name."""
        return [self.compared_one(name, other[name], atol, rtol) for name in self.ref_out]

    def compared_one(self, name: str, other: np.ndarray, atol: float = 0.0, rtol: float = 0.0) -> OutputComparison:
        ref = self.ref_out[name]
        r = compare_arrays(name, ref, other, atol, rtol, self.min_margin, self.axes[name])
        if self.heads[name] is not None and r.problem is None:
            r.detections = compare_detections(ref, other, self.heads[name])
        return r
