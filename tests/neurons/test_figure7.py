"""Figure 7 draws exactly the sweep's figures: each panel's curves, labels and axes, and the PNG's size."""

import struct

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sit_onnx.neurons.sweep import SWEEP_LENGTHS, figure7, plot_figure7


def _rows():
    """Made-up sweep rows whose every figure is distinct, so a curve drawn from the wrong key shows."""
    rows = []
    for i, k in enumerate((4, 8, 12)):
        base = 10.0 ** -(i + 1)
        rows.append({
            "steps": k,
            "si_exp": {"rmse": 1.1 * base},
            "si_exp_shift": {"rmse": 1.2 * base},
            "softmax": [{"mse": (2 + j) * base} for j in range(2 * len(SWEEP_LENGTHS))],
            "objectives": {"exp-rmse": {"kl": 3.1 * base, "worst": 3.2 * base},
                           "softmax": {"kl": 4.1 * base, "worst": 4.2 * base}},
        })  # fmt: skip
    return rows


def _curves(axis):
    return [(line.get_label(), line.get_marker(), line.get_linestyle(), list(line.get_ydata())) for line in axis.lines]


@pytest.fixture
def panels():
    fig = figure7(_rows())
    yield fig.axes
    plt.close(fig)


def test_three_panels_with_their_axes(panels):
    assert [(a.get_title(), a.get_xlabel(), a.get_ylabel(), a.get_yscale()) for a in panels] == [
        ("SI-exp", "time steps K", "RMSE vs exp", "log"),
        ("Spiking-Softmax", "time steps K", "MSE vs softmax", "log"),
        ("max-shift: both objectives", "time steps K", "error on N(0, sigma^2) rows", "log"),
    ]
    for axis in panels:
        assert all(list(line.get_xdata()) == [4, 8, 12] for line in axis.lines)
        assert [t.get_text() for t in axis.get_legend().get_texts()] == [line.get_label() for line in axis.lines]
    assert [t.get_fontsize() for t in panels[1].get_legend().get_texts()] == [7] * 6
    assert [t.get_fontsize() for t in panels[2].get_legend().get_texts()] == [7] * 4


def test_each_curve_is_its_own_figure(panels):
    left, right, ours = panels
    scale = np.array([0.1, 0.01, 0.001])
    assert _curves(left) == [
        ("SI-exp on [-1, 1]", "o", "-", pytest.approx(list(1.1 * scale))),
        ("SI-exp on [-12, 0]", "s", "-", pytest.approx(list(1.2 * scale))),
    ]
    expected = []
    for i, n in enumerate(SWEEP_LENGTHS):
        expected.append((f"paper, n={n}", "o", "-", pytest.approx(list((2 + i) * scale))))
        expected.append((f"max-shift, n={n}", "s", "--", pytest.approx(list((5 + i) * scale))))
    assert _curves(right) == expected
    assert _curves(ours) == [
        ("KL, set fitted to exp-rmse", "o", "-", pytest.approx(list(3.1 * scale))),
        ("worst weight, exp-rmse", "o", "--", pytest.approx(list(3.2 * scale))),
        ("KL, set fitted to softmax", "s", "-", pytest.approx(list(4.1 * scale))),
        ("worst weight, softmax", "s", "--", pytest.approx(list(4.2 * scale))),
    ]


def test_the_png_is_15_by_4_inches_at_120_dpi(tmp_path):
    path = tmp_path / "fig7.png"
    plot_figure7(_rows(), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1800, 480)
    assert plt.get_fignums() == []  # the figure is closed, not left to pile up in a long sweep


def test_the_three_panels_stand_side_by_side(panels):
    boxes = [axis.get_position() for axis in panels]
    assert boxes[0].x1 < boxes[1].x0 and boxes[1].x1 < boxes[2].x0
    assert boxes[0].y0 == pytest.approx(boxes[1].y0) == pytest.approx(boxes[2].y0)
