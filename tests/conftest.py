import os
import sys

if "MUTANT_UNDER_TEST" in os.environ:  # `make mutation`: import mutmut's mutated copy, not the editable install
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc_")]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest  # noqa: E402

if "CUDAExecutionProvider" in ort.get_available_providers() and hasattr(ort, "preload_dlls"):
    ort.preload_dlls()  # onnxruntime-gpu: load CUDA and cuDNN from the nvidia-* wheels torch brought

from sit_onnx.neurons.params import NeuronParams  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_params():
    """A hand-made 3-step neuron, small enough to work out on paper."""
    return NeuronParams(
        thresholds=[0.5, 0.0, -0.5], resets=[1.0, 0.5, 0.25], weights=[2.0, 1.0, 0.5], input_range=[-1, 1]
    )


@pytest.fixture(scope="session")
def params_file(tmp_path_factory):
    """A random 5-step set on [-12, 0]: any numbers do, the rewrite must reproduce the reference."""
    rng = np.random.default_rng(42)
    params = NeuronParams(np.sort(rng.uniform(-12, 0, 5))[::-1], rng.uniform(0.5, 4, 5), rng.uniform(0, 1, 5), (-12, 0))
    path = tmp_path_factory.mktemp("params") / "k5.json"
    params.save(path)
    return str(path)
