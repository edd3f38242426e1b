"""Converted models in OpenVINO: the inlined form (`rewrite --inline`, standard ops only) runs there
and matches onnxruntime when OpenVINO computes in float32 (its CPU default may pick bf16 or f16,
which moves a spiking model's outputs far more than an ordinary one's: thresholds flip)."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from tests.helpers import run

ov = pytest.importorskip("openvino", reason="OpenVINO is an optional runtime (installed by the dev extra)")
BUNDLED = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"


@pytest.mark.parametrize("fuse", [True, False])
def test_inlined_model_runs_in_openvino_at_float32(fuse):
    model, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions(inline=True, fuse=fuse))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 1, 8, 8)).astype(np.float32)
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(model.SerializeToString()), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    got = compiled({"input": x})[compiled.output(0)]
    np.testing.assert_allclose(got, run(model, {"input": x})[0], atol=1e-5)
