"""The shared option helpers: range and NaN checks, strict JSON, the text table's layout."""

import json

import click
import numpy as np
import pytest

from sit_onnx.cli.options import check_range, emit_json, not_nan, table


def test_range_needs_finite_lo_below_hi():
    assert check_range((-1.0, 1.0)) == (-1.0, 1.0)
    for bad in ((1.0, 1.0), (2.0, 1.0), (float("nan"), 1.0), (-1.0, float("inf"))):
        with pytest.raises(click.BadParameter) as raised:
            check_range(bad)
        assert raised.value.param_hint == "--range" and "need finite LO < HI, got" in raised.value.message
    with pytest.raises(click.BadParameter, match=r"^need finite LO < HI, got 1 1$"):
        check_range((1.0, 1.0))


def test_not_nan_names_the_problem():
    assert not_nan(None, None, 0.5) == 0.5 and not_nan(None, None, None) is None
    with pytest.raises(click.BadParameter, match="^must be a number, not NaN$"):
        not_nan(None, None, float("nan"))


def test_json_is_strict_and_refuses_what_it_cannot_write(capsys):
    emit_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    with pytest.raises(TypeError, match="^not JSON serialisable: ndarray$"):
        emit_json({"x": np.zeros(2)})


def test_table_right_aligns_and_writes_floats_in_four_digits():
    text = table([["a", 1.23456789, float("nan")], ["long name", 12, 3.0]], ["name", "x", "y"])
    assert text.splitlines() == [
        "     name      x    y",
        "---------  -----  ---",
        "        a  1.235  nan",
        "long name     12    3",
    ]
