"""compare_arrays, figure by figure, on arrays small enough to work out by hand."""

import math

import numpy as np
import pytest

from sit_onnx.evaluate.compare import compare_arrays


def test_figures_of_a_small_comparison():
    a = np.array([1.0, -2.0, 4.0, 0.5], np.float32)
    b = np.array([1.5, -2.0, 3.0, 0.5], np.float32)
    r = compare_arrays("y", a, b, atol=0.6, rtol=0.0)
    assert (r.name, r.shape, r.atol, r.rtol, r.problem) == ("y", [4], 0.6, 0.0, None)
    assert r.max_abs == 1.0 and r.mean_abs == pytest.approx(0.375) and r.median_abs == pytest.approx(0.25)
    assert r.max_rel == pytest.approx(0.5) and r.mean_rel == pytest.approx((0.5 + 0 + 0.25 + 0) / 4)
    assert r.median_rel == pytest.approx(0.125)
    cosine = float(a.astype(float) @ b / np.linalg.norm(a.astype(float)) / np.linalg.norm(b.astype(float)))
    assert r.cosine == pytest.approx(cosine) and r.min_atol_to_pass == 1.0 and not r.passed
    with_rtol = compare_arrays("y", a, b, atol=0.5, rtol=0.125)  # |4 - 3| <= 0.5 + 0.125 * 4
    assert with_rtol.passed and with_rtol.min_atol_to_pass == pytest.approx(0.5)


def test_cosine_of_zero_and_opposite_outputs():
    zero = np.zeros(3)
    assert compare_arrays("y", zero, zero, 0, 0).cosine == 1.0  # both silent: the same output
    assert compare_arrays("y", zero, np.ones(3), 1, 0).cosine == 0.0
    assert compare_arrays("y", np.ones(3), -np.ones(3), 2, 0).cosine == pytest.approx(-1.0)


def test_non_finite_values_are_left_out_of_the_cosine():
    a, b = np.array([1.0, np.nan, 2.0]), np.array([1.0, np.nan, 2.0])
    r = compare_arrays("y", a, b, 0, 0)
    assert r.passed and r.cosine == pytest.approx(1.0) and r.max_abs == 0.0
    c = np.array([1.0, 5.0, 2.0])  # NaN on one side only: left out of the cosine, fails the tolerance
    one_sided = compare_arrays("y", a, c, 1e9, 0)
    assert not one_sided.passed and one_sided.cosine == pytest.approx(1.0) and math.isinf(one_sided.max_abs)


def test_empty_outputs_compare_equal():
    r = compare_arrays("y", np.zeros((0, 3)), np.zeros((0, 3)), 0, 0)
    assert r.passed and r.max_abs == 0.0 and r.mean_rel == 0.0 and r.min_atol_to_pass == 0.0


def test_shapes_differ_record():
    r = compare_arrays("out", np.zeros((2, 3)), np.zeros((3, 2)), 0.1, 0.2)
    assert (r.name, r.shape, r.atol, r.rtol, r.passed) == ("out", [2, 3], 0.1, 0.2, False)
    assert r.problem == "shapes differ: [2, 3] vs [3, 2]"  # two axes: no one length changed
    longer = compare_arrays("audio", np.zeros((1, 17664)), np.zeros((1, 18176)), 0, 0)
    assert longer.problem == "shapes differ: [1, 17664] vs [1, 18176] (axis 1: +512, +2.9%)"
    shorter = compare_arrays("audio", np.zeros((4, 8)), np.zeros((2, 8)), 0, 0)
    assert shorter.problem == "shapes differ: [4, 8] vs [2, 8] (axis 0: -2, -50.0%)"
    assert compare_arrays("y", np.zeros((0, 2)), np.zeros((3, 2)), 0, 0).problem == "shapes differ: [0, 2] vs [3, 2]"
    assert compare_arrays("y", np.zeros((2,)), np.zeros((2, 1)), 0, 0).problem == "shapes differ: [2] vs [2, 1]"
    assert math.isinf(r.max_abs) and math.isinf(r.min_atol_to_pass) and math.isnan(r.cosine)


def test_integer_outputs_are_compared_as_numbers():
    r = compare_arrays("ids", np.array([3, 7], np.int64), np.array([3, 9], np.int64), 1.5, 0)
    assert r.max_abs == 2.0 and not r.passed


def test_integer_and_bool_outputs_are_judged_by_equal_values():
    """Token ids of a generation, labels, frames: an argmax over ids means nothing and a cosine of ids
    passes sequences whose tokens changed; their share of equal values is what is judged."""
    from sit_onnx.evaluate.compare import approximately_equal, describe_equal_values

    rng = np.random.default_rng(0)
    tokens = rng.integers(100, 200, (4, 32)).astype(np.int32)
    one, two = tokens.copy(), tokens.copy()
    one[1, 30] += 1
    two[1, 30] += 1
    two[3, 5] += 1
    for changed, equal, rows in ((tokens, 1.0, [4, 4]), (one, 127 / 128, [3, 4]), (two, 126 / 128, [2, 4])):
        r = compare_arrays("sequences", tokens, changed, 0, 0)
        assert (r.agreement_of, r.agreement, r.rows_same, r.ties, r.argmax_axis) == ("values", equal, rows, None, None)
        assert r.cosine > 0.9999  # which is why a cosine judges no ids
    assert approximately_equal(compare_arrays("s", tokens, one, 0, 0), 0.9999, 0.99)
    assert not approximately_equal(compare_arrays("s", tokens, two, 0, 0), 0.0, 0.99)  # 98.4%: cosine not asked
    assert approximately_equal(compare_arrays("s", tokens, two, 0, 0), 1.0, 0.98)
    assert describe_equal_values(compare_arrays("s", tokens, two, 0, 0)) == (
        "values the same: 98.44% of elements (2 differ); rows the same: 2 of 4"
    )
    flags = compare_arrays("keep", np.array([True, False, True, True]), np.array([True, True, True, True]), 0, 0)
    assert (flags.agreement_of, flags.agreement, flags.rows_same) == ("values", 0.75, None)  # 1-D: no rows
    assert describe_equal_values(flags) == "values the same: 75.00% of elements (1 differ)"
    labels = compare_arrays("labels", np.full(3, 7, np.int64), np.full(3, 7, np.int64), 0, 0)
    assert labels.constant == 7.0 and labels.agreement == 1.0
    empty = compare_arrays("ids", np.zeros((0, 4), np.int64), np.zeros((0, 4), np.int64), 0, 0)
    assert (empty.agreement, empty.rows_same) == (1.0, [0, 0])
    mask = rng.integers(0, 255, (2, 3, 4)).astype(np.uint8)  # unsigned too; rows along the last axis
    moved = mask.copy()
    moved[0, 2, 1] ^= 1
    r = compare_arrays("mask", mask, moved, 0, 0)
    assert (r.agreement_of, r.agreement, r.rows_same, r.argmax_axis) == ("values", 23 / 24, [5, 6], None)
    pair = compare_arrays("pair", np.array([5, 5], np.int64), np.array([5, 5], np.int64), 0, 0)
    assert pair.constant == 5.0  # two equal elements already say nothing of the conversion
    from sit_onnx.cli.compare import _floor_line

    floor = compare_arrays("hidden_state_ids", tokens, two, 0, 0)  # a name whose argmax decides nothing
    assert ", values the same 98.44%, max abs error 1" in _floor_line(floor, 0.999, 0.99, False)
    floats = compare_arrays("y", tokens.astype(np.float32), one.astype(np.float32), 0, 0)
    assert floats.agreement_of == "argmax" and floats.rows_same is None


def test_argmax_agreement_counts_rows():
    from sit_onnx.evaluate.compare import argmax_agreement

    a = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    b = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.9, 0.1]])  # row 1 decides differently
    assert argmax_agreement(a, b) == 0.75
    assert argmax_agreement(a[0], b[0]) is None and argmax_agreement(a[:0], b[:0]) is None


def test_approximate_verdict():
    from sit_onnx.evaluate.compare import approximately_equal

    a = np.array([[0.1, 0.9], [0.8, 0.2]])
    close = compare_arrays("y", a, a + 0.001, 0, 0)
    assert approximately_equal(close, 0.999, 0.99)
    flipped = compare_arrays("y", a, np.array([[0.1, 0.9], [0.45, 0.55]]), 0, 0)
    assert flipped.agreement == 0.5 and not approximately_equal(flipped, 0.0, 0.99)
    assert approximately_equal(flipped, 0.0, 0.5)
    assert not approximately_equal(compare_arrays("y", a, a.T.copy()[:1], 0, 0), -1, 0)  # shapes differ


def test_compare_cli_defaults_to_the_approximate_check(tmp_path):
    import json

    import onnx
    from click.testing import CliRunner

    from sit_onnx.cli import main
    from sit_onnx.graph.convert import RewriteOptions
    from sit_onnx.graph.convert_file import rewrite_file
    from tests.helpers import softmax_model

    source = tmp_path / "m.onnx"
    onnx.save(softmax_model(["b", 8], -1), str(source))
    rewrite_file(source, tmp_path / "m.sit.onnx", RewriteOptions())
    args = ["compare", str(source), str(tmp_path / "m.sit.onnx")]
    default = CliRunner().invoke(main, [*args, "--json"])
    record = json.loads(default.stdout)
    assert default.exit_code == 0 and record["check"] == "approximate" and record["passed"]
    assert record["outputs"][0]["agreement"] is not None and record["min_cosine"] == 0.999
    strict = CliRunner().invoke(main, [*args, "--atol", "1e-9"])
    assert strict.exit_code == 1 and "tolerance atol=1e-09" in strict.output
    demanding = CliRunner().invoke(main, [*args, "--min-cosine", "1"])
    assert demanding.exit_code == 1 and "approximate: cosine >= 1" in demanding.output


def test_agreement_edges_and_the_verdicts_boundaries():
    from sit_onnx.evaluate.compare import OutputComparison, approximately_equal, argmax_agreement

    one_class = np.ones((4, 1))
    assert argmax_agreement(one_class, one_class) == 1.0  # one logit per row: every row agrees
    assert argmax_agreement(np.ones((4, 0)), np.ones((4, 0))) is None
    assert argmax_agreement(np.ones((0, 3)), np.ones((0, 3))) is None
    assert argmax_agreement(np.ones(3), np.ones(3)) is None
    assert argmax_agreement(np.eye(3), np.eye(3)[::-1]) == pytest.approx(1 / 3)
    assert argmax_agreement(np.eye(3), np.eye(4)[:3, :3].T) == 1.0
    assert argmax_agreement(np.ones((2, 3)), np.ones((3, 2))) is None
    assert argmax_agreement(np.array([[0, 1, 0.99]]), np.array([[0, 0.99, 1]])) == 0.0  # a near-tie counts

    def result(cosine, agreement, problem=None):
        return OutputComparison("y", [2], 0, 0, *([0.0] * 6), cosine, 0.0, False, problem, agreement)

    assert approximately_equal(result(0.999, 0.99), 0.999, 0.99)  # both at their bounds: passes
    assert not approximately_equal(result(0.998, 1.0), 0.999, 0.99)
    assert not approximately_equal(result(1.0, 0.98), 0.999, 0.99)
    assert approximately_equal(result(1.0, None), 0.999, 0.99)
    assert not approximately_equal(result(1.0, 1.0, "shapes differ"), 0.999, 0.99)
    assert not approximately_equal(result(float("nan"), 1.0), 0.999, 0.99)


def test_relative_error_of_non_finite_references_and_tiny_ones():
    from sit_onnx.evaluate.compare import compare_arrays

    a = np.array([np.inf, 1e-15, 2.0])
    b = np.array([np.inf, 1.2e-15, 2.5])
    result = compare_arrays("y", a, b, 0.0, 0.3)
    assert result.max_abs == pytest.approx(0.5) and result.max_rel == pytest.approx(0.25)
    assert result.mean_rel == pytest.approx((0 + 2e-16 / 1e-12 + 0.25) / 3)  # |a| floored at 1e-12
    assert result.passed  # 0.5 <= 0.3 * 2.0 + 0; the infinities match
    mixed = compare_arrays("y", np.array([np.inf, 1.0]), np.array([5.0, 1.0]), 100.0, 0.0)
    assert not mixed.passed and mixed.max_abs == np.inf  # inf against a number: nothing covers it
    scaled = compare_arrays("y", np.array([np.nan, 4.0]), np.array([np.nan, 4.2]), 0.0, 0.1)
    assert scaled.passed and scaled.min_atol_to_pass == 0.0  # NaN matches NaN; 0.2 <= 0.1 * 4


@pytest.mark.parametrize(
    "name, judged",
    [("present.0.key", False), ("present_value", False), ("Past_key_values.1", False), ("logits", True),
     ("last_hidden_state", False), ("text_embeds", False), ("pooler_output", False), ("image_features", False),
     ("represent", True), ("scores", True), ("start_logits", True),
     ("hidden_out", False), ("new_state", False), ("states.1", False), ("h_n", False), ("lstm_c_n", False),
     ("hn", False), ("memory_out", False), ("statement_logits", True), ("estate", True), ("john", True)],
)  # fmt: skip
def test_a_cache_or_embedding_output_is_judged_by_cosine_alone(name, judged):
    """A decoder's cache is state for the next step, an embedding a direction; their argmax over a
    head's or a feature's dims is ties of projections, so a conversion must not fail on it; every
    other output is still judged."""
    from sit_onnx.evaluate.compare import approximately_equal, decides

    a = np.array([[0.50, 0.49], [0.8, 0.2]])
    flipped = compare_arrays(name, a, np.array([[0.49, 0.50], [0.8, 0.2]]), 0, 0)
    assert flipped.agreement == 0.5 and flipped.cosine > 0.999
    assert decides(name) is judged
    assert approximately_equal(flipped, 0.999, 0.99) is not judged
    assert not approximately_equal(flipped, 1.0, 0.0)  # the cosine still judges a cache


def test_compare_cli_says_a_caches_agreement_is_not_judged(tmp_path):
    import onnx
    from click.testing import CliRunner
    from onnx import TensorProto, helper

    from sit_onnx.cli import main

    def model(scale):
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "s"], ["present.0.key"]), helper.make_node("Mul", ["x", "s"], ["logits"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in ("present.0.key", "logits")],
            [helper.make_tensor("s", TensorProto.FLOAT, [2], scale)],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    onnx.save(model([1.0, 1.0]), str(tmp_path / "a.onnx"))
    onnx.save(model([1.0, 1.02]), str(tmp_path / "b.onnx"))  # flips rows whose two entries are close
    np.savez(tmp_path / "x.npz", x=np.array([[0.5, 0.495], [0.9, 0.1]], np.float32))
    args = ["compare", str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"), "--inputs", str(tmp_path / "x.npz")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "50.00% of rows (a cache, state or embedding: not judged)" in result.output
    blocks = result.output.split("[logits]")
    assert blocks[0].rstrip().endswith("PASSED") and blocks[1].rstrip().splitlines()[-2].strip() == "FAILED"


def test_near_tie_figures_row_by_row():
    """The reference's lead (top-1 over top-2, as a share of the row's range) decides whether a row
    counts; flipped rows report the widest lead among them."""
    from sit_onnx.evaluate.compare import _lead, argmax_figures

    a = np.array([[0.0, 1.0, 0.99], [0.0, 1.0, 0.5], [2.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
    assert _lead(a) == pytest.approx([0.01, 0.5, 1.0, 0.0])
    assert _lead(np.array([[5.0], [-1.0]])).tolist() == [1.0, 1.0]  # one entry: decided outright
    assert _lead(np.array([[-2.0, 1.0, 0.5], [-7.0, -4.0, -5.0]])) == pytest.approx([0.5 / 3, 1 / 3])  # range from min
    two = np.array([[0.5001, 0.4999], [0.1, 0.9], [0.8, 0.2]])  # two classes: a share of the output's range
    assert _lead(two) == pytest.approx([0.0002 / 0.8, 1.0, 0.75])
    assert _lead(np.array([[1.0, np.nan], [2.0, 0.0], [3.0, 3.0]])) == pytest.approx([0.0, 2 / 3, 0.0])
    assert argmax_figures(np.ones((1, 1)), np.ones((1, 1)), 0.5)[0] == 1.0
    b = np.array([[0.0, 0.99, 1.0], [0.0, 0.4, 0.5], [2.0, 0.0, 0.0], [3.0, 3.0, 3.0]])  # rows 0, 1 flip
    cube_a, cube_b = np.stack([a[:2], a[2:]]), np.stack([b[:2], b[2:]])  # rows along the last axis of 3-D outputs
    assert argmax_figures(cube_a, cube_b, 0.0)[0] == 0.5 and argmax_figures(cube_a, cube_b, 0.02)[1].undecided == 2
    agreement, ties = argmax_figures(a, b, 0.0)
    assert agreement == 0.5 and (ties.disagreements, ties.undecided, ties.min_margin) == (2, 0, 0.0)
    assert ties.widest_flipped_margin == pytest.approx(0.5)
    agreement, ties = argmax_figures(a, b, 0.01)  # a lead of the margin still decides; a constant row does not
    assert agreement == pytest.approx(1 / 3) and (ties.disagreements, ties.undecided) == (2, 1)
    agreement, ties = argmax_figures(a, b, 0.02)  # the 1% near-tie and the constant row left out
    assert agreement == 0.5 and (ties.disagreements, ties.undecided) == (1, 2)
    agreement, ties = argmax_figures(a, b, 0.6)  # only the clear row 2 decides, and agrees
    assert agreement == 1.0 and (ties.disagreements, ties.widest_flipped_margin, ties.undecided) == (0, None, 3)
    agreement, ties = argmax_figures(a[3:], b[3:], 0.5)
    assert agreement is None and ties.undecided == 1
    assert argmax_figures(np.ones(3), np.ones(3), 0.0) is None
    nan_row = np.array([[np.nan, 1.0, 0.0]])
    assert argmax_figures(nan_row, np.array([[0.0, 1.0, 0.0]]), 0.0)[0] == 0.0  # counted by default
    agreement, ties = argmax_figures(nan_row, np.array([[0.0, 1.0, 0.0]]), 0.5)
    assert agreement is None and ties.undecided == 1  # a NaN row decides nothing


def test_compare_cli_min_margin_forgives_near_ties_only(tmp_path):
    """A flip of a 1% lead fails by default and passes with --min-margin 0.02; a flip of a clear
    lead fails either way. The report says how close the flipped rows were."""
    import json

    import onnx
    from click.testing import CliRunner
    from onnx import TensorProto, helper

    from sit_onnx.cli import main

    def model(scale):
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "s"], ["logits"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4, 3])],
            [helper.make_tensor("s", TensorProto.FLOAT, [3], scale)],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    onnx.save(model([1.0, 1.0, 1.0]), str(tmp_path / "a.onnx"))
    onnx.save(model([1.0, 1.0, 1.3]), str(tmp_path / "b.onnx"))
    rows = [[0.0, 1.0, 0.99], [0.0, 1.0, 0.2], [1.0, 0.0, 0.0], [0.0, 0.3, 1.0]]
    np.savez(tmp_path / "tie.npz", x=np.array(rows, np.float32))
    np.savez(tmp_path / "clear.npz", x=np.array([[0.0, 1.0, 0.8]] * 4, np.float32))  # a lead of 20%
    args = ["compare", str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"), "--min-cosine", "0.9"]
    tie = [*args, "--inputs", str(tmp_path / "tie.npz")]
    plain = CliRunner().invoke(main, tie)
    assert plain.exit_code == 1 and "argmax agreement 75.00% of rows; the reference's top-1 led by at most 1%" in (
        plain.output
    )
    forgiving = CliRunner().invoke(main, [*tie, "--min-margin", "0.02", "--json"])
    record = json.loads(forgiving.stdout)
    assert forgiving.exit_code == 0 and record["passed"] and record["min_margin"] == 0.02
    out = record["outputs"][0]
    assert out["agreement"] == 1.0 and out["ties"] == {
        "disagreements": 0, "widest_flipped_margin": None, "undecided": 1, "min_margin": 0.02
    }  # fmt: skip
    said = CliRunner().invoke(main, [*tie, "--min-margin", "0.02"])
    assert "100.00% of rows (1 led by under 2% of their range not counted)" in said.output
    clear = CliRunner().invoke(main, [*args, "--inputs", str(tmp_path / "clear.npz"), "--min-margin", "0.02"])
    assert clear.exit_code == 1 and "0.00% of rows; the reference's top-1 led by at most 20% " in clear.output
    for bad in ("1.5", "-0.1", "nan"):
        assert CliRunner().invoke(main, [*tie, "--min-margin", bad]).exit_code == 2


@pytest.mark.parametrize(
    "reference, constant",
    [
        (np.zeros((2, 3)), 0.0),
        (np.full(4, -1.5), -1.5),
        (np.array([1.0, 1.0, 2.0]), None),
        (np.array([7.0]), None),  # one element: no spread to show
        (np.zeros(0), None),
        (np.array([np.nan, 1.0]), None),
        (np.array([[0.0, 0.0], [0.0, 1e-30]]), None),  # the last element differs
    ],
)
def test_a_constant_reference_output_is_named(reference, constant):
    result = compare_arrays("y", reference, reference + 0.0, 0.0, 0.0)
    assert result.constant == constant


def test_an_all_nan_reference_is_constant_nan():
    assert math.isnan(compare_arrays("y", np.full(3, np.nan), np.full(3, np.nan), 0.0, 0.0).constant)


def test_compare_cli_notes_an_output_that_cannot_show_the_conversion(tmp_path):
    """timm's Hiera with random weights zeroes its head: every logit 0, before and after."""
    import onnx
    from click.testing import CliRunner
    from onnx import TensorProto, helper

    from sit_onnx.cli import main

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["p"]), helper.make_node("Mul", ["p", "zero"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4]) for n in ("logits", "p")],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "a.onnx"))
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "a.onnx"), str(tmp_path / "a.onnx")])
    assert result.exit_code == 0
    logits, probabilities = result.output.split("[p]")
    assert "note: every element of the reference's output is 0: it cannot show what the conversion" in logits
    assert "note:" not in probabilities


@pytest.mark.parametrize(
    "shape, images, axis",
    [((2, 5, 32, 32), {(32, 32)}, -3), ((2, 1, 32, 32), {(32, 32)}, None), ((2, 5, 8, 8), {(32, 32)}, -3),
     ((2, 5, 8, 16), {(32, 32)}, -1), ((2, 5, 7, 7), {(32, 32)}, -1), ((2, 5, 16, 8), {(32, 16)}, -3),
     ((2, 5, 32, 32), set(), -1), ((4, 32, 32), {(32, 32)}, None), ((2, 32, 32), {(16, 16)}, -1),
     ((2, 5, 0, 32), {(32, 32)}, -1), ((2, 32), {(32, 32)}, -1), ((3, 2, 5, 32, 32), {(32, 32)}, -3),
     ((2, 5, 64, 64), {(32, 32)}, -1), ((2, 3, 4, 8), {(32, 64), (8, 8)}, -3), ((4, 0, 32), {(32, 32)}, -1),
     ((2, 0, 32, 32), {(32, 32)}, None)],
)  # fmt: skip
def test_a_dense_map_of_an_input_image_decides_over_its_channels(shape, images, axis):
    """The last two dims an input image's height and width, or both divided by one stride: a map
    (segmentation, depth, saliency), decided per pixel over the channel axis; one channel: nothing
    decides. Anything else (another stride per dim, an upsampled map, no image): the last axis."""
    from sit_onnx.evaluate.compare import decision_axis

    assert decision_axis(shape, images) == axis


def test_image_sizes_are_the_float_four_dim_inputs():
    from sit_onnx.evaluate.compare import image_sizes

    feeds = {
        "pixels": np.zeros((2, 3, 24, 40), np.float32),
        "ids": np.zeros((2, 3, 20, 30), np.int64),  # not an image: integers
        "narrow": np.zeros((2, 3, 2, 40), np.float32),  # two pixels high: an image still
        "tokens": np.zeros((2, 16), np.float32),
        "line": np.zeros((2, 3, 1, 40), np.float16),  # one pixel high: a sequence, not an image
        "half": np.zeros((1, 1, 8, 8), np.float16),
    }
    assert image_sizes(feeds) == {(24, 40), (8, 8), (2, 40)}


def test_a_maps_agreement_is_taken_per_pixel_over_its_channels():
    """Two classes per pixel of a 1 x 2 x 2 x 3 map: the channel argmax flips at one pixel of six
    (1/6), where the last-axis rows (pixels of one line) would say otherwise; no axis: no figures."""
    a = np.zeros((1, 2, 2, 3))
    a[0, 0] = [[1.0, 2.0, 3.0], [1.0, 0.0, 2.0]]
    b = a.copy()
    b[0, 1, 0, 2] = 5.0  # channel 1 wins at pixel (0, 2) only
    per_pixel = compare_arrays("seg", a, b, 0, 0, axis=-3)
    assert per_pixel.agreement == pytest.approx(5 / 6) and per_pixel.argmax_axis == -3
    assert per_pixel.ties.disagreements == 1
    assert compare_arrays("seg", a, b, 0, 0).agreement == pytest.approx(3 / 4)  # along lines: another figure
    silent = compare_arrays("seg", a, b, 0, 0, axis=None)
    assert silent.agreement is None and silent.ties is None and silent.argmax_axis is None
    assert silent.cosine < 1.0  # still compared element by element
    assert compare_arrays("y", np.ones(3), np.ones(3), 0, 0).argmax_axis is None  # no rows: no axis


def test_compare_cli_judges_an_image_map_per_pixel_and_a_one_channel_map_by_cosine(tmp_path):
    import json

    import onnx
    from click.testing import CliRunner
    from onnx import TensorProto, helper

    from sit_onnx.cli import main

    def model(shift):
        """pixels N x 2 x 8 x 8 -> a two-class map (pixels + shift per channel) and a one-channel map."""
        graph = helper.make_graph(
            [helper.make_node("Add", ["pixels", "s"], ["classes"]),
             helper.make_node("ReduceSum", ["classes", "axes"], ["saliency"], keepdims=1)],
            "g",
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 2, 8, 8])],
            [helper.make_tensor_value_info("classes", TensorProto.FLOAT, None),
             helper.make_tensor_value_info("saliency", TensorProto.FLOAT, None)],
            [helper.make_tensor("s", TensorProto.FLOAT, [1, 2, 1, 1], [0.0, shift]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
        )  # fmt: skip
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])

    onnx.save(model(0.0), str(tmp_path / "a.onnx"))
    onnx.save(model(0.001), str(tmp_path / "b.onnx"))  # a tiny shift: no pixel near a tie flips
    onnx.save(model(3.0), str(tmp_path / "c.onnx"))  # channel 1 wins almost everywhere
    same = CliRunner().invoke(main, ["compare", str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")])
    assert same.exit_code == 0, same.output
    line = next(s for s in same.output.splitlines() if "argmax agreement 1" in s)
    assert "argmax agreement 100.00% of rows" in line and line.endswith("(per pixel, over the map's channels)")
    one_channel = "    a one-channel map of the input image (saliency, depth, a mask): no argmax decides"
    assert one_channel in same.output.splitlines()
    moved = CliRunner().invoke(main, ["compare", str(tmp_path / "a.onnx"), str(tmp_path / "c.onnx"), "--json"])
    outputs = {o["name"]: o for o in json.loads(moved.stdout)["outputs"]}
    assert moved.exit_code == 1 and outputs["classes"]["argmax_axis"] == -3 and not outputs["classes"]["passed"]
    assert 0.4 < outputs["classes"]["agreement"] < 0.65  # the reference picks channel 1 at about half the pixels
    assert outputs["saliency"]["argmax_axis"] is None and outputs["saliency"]["agreement"] is None


def test_generated_inputs_leave_near_ties_out_by_default(tmp_path):
    """On generated inputs a flip where the top-1 led by under 2% of the row's range is not counted
    (and the report says so); --min-margin 0 counts it; given inputs count every row by default."""
    import json

    import onnx
    from click.testing import CliRunner
    from onnx import TensorProto, helper, numpy_helper

    from sit_onnx.cli import main

    def model(rows, path):  # logits = rows + 0 * mean(x): fixed rows, whatever the input
        graph = helper.make_graph(
            [
                helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
                helper.make_node("Mul", ["m", "zero"], ["z"]),
                helper.make_node("Add", ["rows", "z"], ["logits"]),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4, 3])],
            [
                numpy_helper.from_array(np.array(rows, np.float32), "rows"),
                numpy_helper.from_array(np.float32(0), "zero"),
            ],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return str(path)

    clear = [[0.0, 1.0, 0.2], [1.0, 0.0, 0.0], [0.0, 0.3, 1.0]]
    a = model([[0.0, 1.0, 0.985], *clear], tmp_path / "a.onnx")  # a lead of 1.5% of the row's range
    b = model([[0.0, 0.985, 1.0], *clear], tmp_path / "b.onnx")
    generated = CliRunner().invoke(main, ["compare", a, b])
    assert generated.exit_code == 0, generated.output
    agreement = "    argmax agreement 100.00% of rows (1 led by under 2% of their range not counted)"
    assert agreement in generated.output.splitlines()  # the whole line: no map's "per pixel" after it
    record = json.loads(CliRunner().invoke(main, ["compare", a, b, "--json"]).stdout)
    assert record["min_margin"] == 0.02 and record["outputs"][0]["ties"]["undecided"] == 1
    counted = CliRunner().invoke(main, ["compare", a, b, "--min-margin", "0"])
    assert counted.exit_code == 1 and "argmax agreement 75.00% of rows" in counted.output
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 3), np.float32))
    given = CliRunner().invoke(main, ["compare", a, b, "--inputs", str(tmp_path / "x.npz"), "--json"])
    assert given.exit_code == 1 and json.loads(given.stdout)["min_margin"] == 0.0
    wide = model([[0.0, 1.0, 0.97], *clear], tmp_path / "c.onnx")  # a lead of 3%: a decision, counted
    assert (
        CliRunner().invoke(main, ["compare", wide, model([[0.0, 0.97, 1.0], *clear], tmp_path / "d.onnx")]).exit_code
        == 1
    )


def test_lead_of_two_entry_rows_without_a_finite_value():
    from sit_onnx.evaluate.compare import _lead

    assert _lead(np.full((3, 2), np.nan)).tolist() == [0.0, 0.0, 0.0]


def _scaling_model(path, outputs, scale=1.0, reshape_to=None):
    """x [batch, seq] -> each output = x * scale (after a Reshape to a fixed shape, if given)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s")]
    nodes, source = [], "x"
    if reshape_to is not None:
        inits.append(numpy_helper.from_array(np.array(reshape_to, np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["x", "shape"], ["r"]))
        source = "r"
    nodes += [helper.make_node("Mul", [source, "s"], [o]) for o in outputs]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def test_compare_cli_verdict_line_missing_outputs_and_a_candidate_failing_on_generated_inputs(tmp_path):
    import onnx
    from click.testing import CliRunner

    from sit_onnx.cli import main

    a = _scaling_model(tmp_path / "a.onnx", ["y", "z"])
    same = CliRunner().invoke(main, ["compare", a, a])
    assert same.exit_code == 0
    assert same.output.strip().splitlines()[-1] == f"PASSED | CPUExecutionProvider | sit-onnx compare {a} {a}"
    other = _scaling_model(tmp_path / "b.onnx", ["hidden"])
    lacking = CliRunner().invoke(main, ["compare", a, other])
    assert (lacking.exit_code, lacking.output.strip()) == (1, f"Error: {other}: lacks the outputs y, z")
    renamed = onnx.load(a)
    renamed.graph.input[0].name = renamed.graph.node[0].input[0] = renamed.graph.node[1].input[0] = "w"
    onnx.save(renamed, tmp_path / "w.onnx")
    other_inputs = CliRunner().invoke(main, ["compare", a, str(tmp_path / "w.onnx")])
    assert other_inputs.output.strip() == f"Error: {tmp_path / 'w.onnx'}: takes the inputs w, {a} takes x"
    fixed = _scaling_model(tmp_path / "c.onnx", ["y", "z"], reshape_to=[1, 4])
    failing = CliRunner().invoke(main, ["compare", a, fixed])
    (line,) = failing.output.strip().splitlines()
    assert failing.exit_code == 1 and line.startswith(f"Error: {fixed}: onnxruntime failed to run the model: ")
    assert line.endswith("(on generated inputs: x [4, 16] float32; give the model's own with --inputs)")


def test_compare_cli_strict_check_shows_the_argmax_of_any_output(tmp_path):
    """The approximate check shows a hidden state's argmax as not judged (it decides nothing); the
    strict one shows it as a figure like any other."""
    from click.testing import CliRunner

    from sit_onnx.cli import main

    a = _scaling_model(tmp_path / "a.onnx", ["last_hidden_state"])
    b = _scaling_model(tmp_path / "b.onnx", ["last_hidden_state"], scale=1.01)
    strict = CliRunner().invoke(main, ["compare", a, b, "--atol", "10"])
    approximate = CliRunner().invoke(main, ["compare", a, b])
    assert strict.exit_code == approximate.exit_code == 0
    assert "    argmax agreement 100.00% of rows" in strict.output.splitlines()
    assert (
        "    argmax agreement 100.00% of rows (a cache, state or embedding: not judged)"
        in approximate.output.splitlines()
    )
    assert "    argmax agreement 100.00% of rows" not in approximate.output.splitlines()
