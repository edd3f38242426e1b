import numpy as np
import pytest

from sit_onnx.neurons.params import NeuronParams


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_params():
    """A hand-made 3-step neuron, small enough to work out on paper."""
    return NeuronParams(thresholds=[0.5, 0.0, -0.5], resets=[1.0, 0.5, 0.25], weights=[2.0, 1.0, 0.5],
                        input_range=[-1, 1])
