"""`sit-onnx calibrate`'s figures for one site, worked out by hand at the edges of the ranges."""

from types import SimpleNamespace

import numpy as np
import pytest

from sit_onnx.evaluate.calibrate import _recommend, _site_calibration, unreached


def site(axis):
    return SimpleNamespace(name="att", axis=axis)


def test_range_shares_count_their_edges_and_follow_the_axis():
    logits = np.array([[-1.0, 1.0, 0.5, 3.0], [12.0, 0.0, -12.0, 1.0]])
    rows = _site_calibration(site(1), logits)
    assert (rows.name, rows.axis, rows.count) == ("att", 1, 8)
    assert rows.inside_paper_range == pytest.approx(5 / 8)  # -1, 1, 0.5, 0 and 1: the edges count
    # shifted along rows: [-4, -2, -2.5, 0], [0, -12, -24, -11]: -12 itself is inside, -24 is not
    assert rows.inside_shift_range == pytest.approx(7 / 8)
    cols = _site_calibration(site(0), logits)  # shifted along columns: [-13, 0, 0, 0], [0, -1, -12.5, -2]
    assert cols.inside_shift_range == pytest.approx(6 / 8) and cols.axis == 0
    tall = _site_calibration(site(0), np.array([[0.0], [-12.5]]))
    wide = _site_calibration(site(1), np.array([[0.0], [-12.5]]))
    assert tall.inside_shift_range == 0.5 and wide.inside_shift_range == 1.0
    assert (rows.min, rows.max) == (-12.0, 12.0)
    assert rows.recommendation == _recommend(5 / 8, 7 / 8) and "12.5% of shifted logits" in rows.recommendation
    p01, p50, p99 = np.percentile(logits, [1, 50, 99])
    assert (rows.p01, rows.p50, rows.p99) == (pytest.approx(p01), pytest.approx(p50), pytest.approx(p99))


def test_non_finite_logits_are_left_out_of_the_statistics():
    logits = np.array([[0.5, np.nan, -np.inf, 2.0]])
    result = _site_calibration(site(-1), logits)
    assert result.count == 4 and (result.min, result.max) == (0.5, 2.0)
    assert result.inside_paper_range == 0.5  # of the two finite values
    assert result.inside_shift_range == 1.0  # NaN and -inf rows are not "below the range"
    assert result.p50 == pytest.approx(1.25)


def test_masked_logits_are_counted_apart_from_the_statistics():
    """A mask's -3.4e38 (or -inf, or anything whose e^(x - max) float32 rounds to nothing) is
    reported as a share, not as the row's minimum or percentiles; -103 below the row's maximum,
    which still carries a subnormal weight, counts as a logit, -104 does not."""
    lowest = np.finfo(np.float32).min
    logits = np.array([[0.5, 2.0, lowest, -np.inf], [1.0, -102.0, -200.0, 0.0]])
    result = _site_calibration(site(1), logits)
    assert result.masked == pytest.approx(3 / 8)  # lowest, -inf and -200 (shifted by 1: -201)
    assert (result.min, result.max) == (-102.0, 2.0)
    assert result.inside_paper_range == pytest.approx(3 / 5)
    assert result.p50 == pytest.approx(0.5)
    columns = _site_calibration(site(0), logits)  # along columns: -102 (-104 shifted), lowest, -inf
    assert columns.masked == pytest.approx(3 / 8) and columns.min == -200.0
    whole = _site_calibration(site(1), np.full((2, 3), lowest))  # a row all masked is its own max
    assert whole.masked == 0.0 and whole.min == lowest


def test_an_empty_site_reports_nothing_inside_and_no_percentiles():
    result = _site_calibration(site(1), np.zeros((0, 4)))
    assert result.count == 0 and result.inside_paper_range == 0.0 and result.inside_shift_range == 0.0
    assert result.masked == 0.0
    assert (result.min, result.max) == (np.inf, -np.inf) and np.isnan([result.p01, result.p50, result.p99]).all()


@pytest.mark.parametrize("in_paper", [0.99, 1.0])
def test_paper_mode_from_99_percent_inside(in_paper):
    assert _recommend(in_paper, 0.0) == "paper mode works as is (--no-shift): logits already lie in [-1, 1]"


def test_shift_advice_and_its_share_below_the_range():
    plain = _recommend(0.42, 0.99)
    assert plain.startswith("--shift (default), K=12") and "only 42% of logits lie in [-1, 1]" in plain
    assert "fall below" not in plain  # 99% inside: nothing to add
    assert "; 10.0% of shifted logits fall below -12" in _recommend(0.5, 0.9)
    below = _recommend(0.989, 0.975)
    assert "only 99% of logits" in below
    assert below.endswith("; 2.5% of shifted logits fall below -12, where exp < 6e-06 and SI-exp gives 0: "
                          "harmless unless rows are very long")  # fmt: skip


def test_unreached_sites_are_counted_in_words():
    tail = "where the data cannot be read out (a Loop or Scan body, a generation op's subgraph)"
    assert unreached(1, "softmax site") == f"1 softmax site lies {tail}"
    assert unreached(2, "converted site") == f"2 converted sites lie {tail}"
