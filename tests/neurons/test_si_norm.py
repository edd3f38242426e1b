import numpy as np
import pytest

from sit_onnx.neurons import si_norm, simulate_si_norm
from tests.helpers import warnings_fail


def test_amplified_form_is_normalisation():
    w = np.array([[1.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(si_norm(w, axis=-1), [[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(si_norm(w, axis=0), [[1 / 3, 0.6], [2 / 3, 0.4]])


def test_rate_coded_hand_case():
    # w/V_th = 0.3, 0.7 with N=4: floor(1.2)=1, floor(2.8)=2
    np.testing.assert_allclose(si_norm(np.array([0.3, 0.7]), time_steps=4), [0.25, 0.5])


@pytest.mark.parametrize("n_steps", [1, 3, 8, 16, 100])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_simulated_membrane_equals_floor_identity(rng, n_steps, axis):
    w = rng.uniform(0, 3, (6, 9, 4))
    rate, count = simulate_si_norm(w, axis=axis, time_steps=n_steps)
    v_th = w.sum(axis=axis, keepdims=True)
    np.testing.assert_array_equal(count, np.floor(n_steps * w / v_th))
    np.testing.assert_allclose(rate, si_norm(w, axis=axis, time_steps=n_steps), atol=1e-12)


def test_single_element_fires_every_step():
    rate, count = simulate_si_norm(np.array([[0.7]]), time_steps=5)
    assert count[0, 0] == 5 and rate[0, 0] == 1.0


def test_rate_converges_to_amplified(rng):
    w = rng.uniform(0, 1, (50, 10))
    exact = si_norm(w)
    for n_steps in (10, 100, 1000):
        assert np.max(np.abs(si_norm(w, time_steps=n_steps) - exact)) <= 1 / n_steps


def test_non_positive_threshold_gives_zero():
    w = np.array([[0.0, 0.0], [1.0, -1.0], [-1.0, -2.0]])
    for mode in (0, 8):
        np.testing.assert_array_equal(si_norm(w, time_steps=mode), np.zeros_like(w))
        assert np.all(simulate_si_norm(w, time_steps=8)[1] == 0)


def test_negative_weight_never_fires():
    w = np.array([-0.5, 1.0, 1.5])
    out = si_norm(w, time_steps=10)
    assert out[0] == 0
    assert simulate_si_norm(w, time_steps=10)[1][0] == 0


def test_nan_propagates_along_its_row():
    out = si_norm(np.array([[np.nan, 1.0], [1.0, 1.0]], dtype=np.float32))
    assert np.all(np.isnan(out[0])) and np.all(out[1] == 0.5)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_and_shape_preserved(rng, dtype):
    w = rng.uniform(0, 1, (2, 3, 0, 4)).astype(dtype)
    assert si_norm(w, axis=1).shape == w.shape and si_norm(w).dtype == dtype


def test_negative_time_steps_rejected():
    with pytest.raises(ValueError, match="time_steps"):
        si_norm(np.ones(3), time_steps=-1)


@pytest.mark.parametrize("time_steps", [0, -1])
def test_simulation_needs_at_least_one_input_spike(time_steps):
    from sit_onnx.neurons.si_norm import simulate_si_norm

    with pytest.raises(ValueError, match=f"simulation needs time_steps >= 1, got {time_steps}"):
        simulate_si_norm(np.ones((2, 3)), time_steps=time_steps)


def test_simulation_counts_are_integers_on_float32_input():
    from sit_onnx.neurons.si_norm import simulate_si_norm

    rates, counts = simulate_si_norm(np.array([[1, 2, 1]], np.float32), time_steps=8)
    assert counts.dtype == np.int64 and counts.tolist() == [[2, 4, 2]] and rates.tolist() == [[0.25, 0.5, 0.25]]


@pytest.mark.parametrize("time_steps", [0, 8])
def test_edge_rows_raise_no_numpy_warnings(time_steps):
    """A zero row (0/0), a sum beyond float32 (inf) and NaN are defined outputs, not warnings a
    user's `-W error` run would turn into failures."""
    w = np.array([[0, 0, 0], [3e38, 3e38, 1], [np.nan, 1, 1], [np.inf, 1, 1]], dtype=np.float32)
    with warnings_fail():
        out = si_norm(w, time_steps=time_steps)
    assert np.all(out[0] == 0) and np.all(np.isnan(out[2]))


def test_float32_is_normalised_in_float32_as_the_kernels_do(rng):
    """w * (1 / V_th) in float32, bit for bit: the kernels' arithmetic, not float64's rounded down."""
    w = rng.uniform(0, 1, (64, 37)).astype(np.float32)
    v_th = np.sum(w, axis=-1, keepdims=True, dtype=np.float32)
    np.testing.assert_array_equal(si_norm(w), w * (np.float32(1) / v_th))
