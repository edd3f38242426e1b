"""Converted models in tract (Sonos' Rust runtime, through its Python bindings): the inlined form
(`rewrite --inline`) loads, is typed and runs there, matching onnxruntime."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from tests.helpers import run

tract = pytest.importorskip("tract", reason="tract is an optional runtime (installed by the dev extra)")
BUNDLED = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"


@pytest.mark.parametrize("fuse", [True, False])
def test_inlined_model_runs_in_tract(tmp_path, fuse):
    model, _ = rewrite_model(onnx.load(str(BUNDLED)), RewriteOptions(inline=True, fuse=fuse))
    path = tmp_path / "vit.onnx"
    onnx.save(model, str(path))
    inference = tract.onnx().load(str(path))
    inference.set_input_fact(0, "3,1,8,8,f32")
    runnable = inference.into_model().into_runnable()
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 1, 8, 8)).astype(np.float32)
    got = runnable.run([x])[0].to_numpy()
    np.testing.assert_allclose(got, run(model, {"input": x})[0], atol=1e-5)
