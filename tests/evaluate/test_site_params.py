"""Per-site calibration (`rewrite --calibrate`) and the shipped set's objective (`--objective`):
each site gets its own set, the converted graph computes exactly what those sets compute, and the
flags that cannot go with it are refused."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.site_params import choose_site_params
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.helpers import SHARED_SCOPE, run, softmax_model

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "vit_digits.onnx"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def two_sites():
    """Two softmax sites over different axes, fed logits of very different spread."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "wide"], ["s1"]),
            helper.make_node("Softmax", ["s1"], ["p1"], axis=-1, name="wide_rows"),
            helper.make_node("Mul", ["x", "narrow"], ["s2"]),
            helper.make_node("Softmax", ["s2"], ["p2"], axis=1, name="narrow_columns"),
        ],
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6, 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 6, 5]) for n in ("p1", "p2")],
        [
            numpy_helper.from_array(np.array(6.0, np.float32), "wide"),
            numpy_helper.from_array(np.array(0.5, np.float32), "narrow"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def attributes(node):
    return {a.name: list(a.floats) for a in node.attribute if a.floats}


@pytest.fixture(scope=SHARED_SCOPE)
def calibrated():
    model = two_sites()
    feeds = {"x": np.random.default_rng(0).normal(size=(40, 6, 5)).astype(np.float32)}
    return model, feeds, choose_site_params(model, feeds, steps=4, rounds=1)


def test_each_site_gets_a_set_chosen_on_its_own_held_out_rows(calibrated):
    _, _, choices = calibrated
    assert [c.name for c in choices] == ["wide_rows", "narrow_columns"]
    wide, narrow = choices
    assert (wide.axis, wide.length, narrow.axis, narrow.length) == (-1, 5, 1, 6)
    assert (wide.rows, narrow.rows) == (40 * 6 // 2, 40 * 5 // 2)  # half the rows (the other half is polished on)
    assert wide.shifted_p01 < narrow.shifted_p01 < 0  # spread x6 against x0.5
    for c in choices:
        assert set(c.candidates) == {"shipped softmax", "shipped exp-rmse", c.chosen} | {
            k for k in c.candidates if k.startswith("polished from")
        }
        value = {k: v["l1"] + v["worst_mean"] + 0.1 * v["kl"] for k, v in c.candidates.items()}
        assert all(v["value"] == pytest.approx(value[k]) for k, v in c.candidates.items())
        assert value[c.chosen] == min(value.values())  # the best on the held-out half
        assert c.params.steps == 4 and "params" not in c.to_dict()
    assert wide.params.thresholds != narrow.params.thresholds


def test_without_rounds_only_shipped_sets_are_candidates(calibrated):
    model, feeds, _ = calibrated
    choices = choose_site_params(model, feeds, steps=4, rounds=0)
    assert all(set(c.candidates) == {"shipped softmax", "shipped exp-rmse"} for c in choices)
    assert all(c.params == shipped_params(4, SHIFT_RANGE, c.chosen.split()[-1]) for c in choices)


def test_converted_graph_computes_each_sites_own_set(calibrated):
    model, feeds, choices = calibrated
    sets = {c.name: c.params for c in choices}
    new, report = rewrite_model(model, RewriteOptions(steps=4), site_params=sets)
    got = run(new, feeds)
    for c, out, axis in zip(choices, got, (-1, 1)):
        scale = 6.0 if c.name == "wide_rows" else 0.5
        x = feeds["x"] * np.float32(scale)
        expected = spiking_softmax(x, c.params, axis=axis, options=SoftmaxOptions(shift=True))
        np.testing.assert_allclose(out, expected, atol=1e-6)
    nodes = [n for n in new.graph.node if n.op_type == "SpikingSoftmax"]
    assert len(nodes) == 2 and "2 of 2 converted sites carry their own calibrated parameter set" in report.notes
    for node, c in zip(nodes, choices):
        np.testing.assert_allclose(attributes(node)["thresholds"], c.params.thresholds, rtol=1e-6)
    default = run(rewrite_model(model, RewriteOptions(steps=4))[0], feeds)
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(got, default))  # the sets changed the numbers


def test_site_sets_of_another_k_are_refused(calibrated):
    model, _, choices = calibrated
    with pytest.raises(SitOnnxError, match="K=4 x 1 neurons; every site needs K=12"):
        rewrite_model(model, RewriteOptions(steps=12), site_params={c.name: c.params for c in choices})


def test_objective_picks_the_shipped_set(tmp_path):
    model = two_sites()
    feeds = {"x": np.random.default_rng(1).normal(size=(3, 6, 5)).astype(np.float32)}
    for objective in ("exp-rmse", "softmax", None):
        new, report = rewrite_model(model, RewriteOptions(steps=8, objective=objective))
        params = shipped_params(8, SHIFT_RANGE, objective)
        assert report.params.endswith(f"fitted to {objective or 'softmax'}")
        expected = spiking_softmax(feeds["x"] * 6, params, axis=-1, options=SoftmaxOptions(shift=True))
        np.testing.assert_allclose(run(new, feeds)[0], expected, atol=1e-6)
    with pytest.raises(SitOnnxError, match="no meaning with --params"):
        RewriteOptions(params_file="p.json", objective="softmax").neuron_params()
    with pytest.raises(SitOnnxError, match="softmax sets are fitted to rows of max-shifted logits: they need --shift"):
        RewriteOptions(shift=False, objective="softmax").neuron_params()


@pytest.mark.parametrize("flag", [["--no-shift"], ["--sigmoid"], ["--objective", "softmax"], ["--params", "p.json"]])
def test_calibrate_refuses_flags_that_choose_the_sets(tmp_path, flag):
    result = invoke("rewrite", BUNDLED, "-o", tmp_path / "o.onnx", "--calibrate", "digits", *flag)
    said = " ".join(result.output.split())  # click wraps the usage error
    assert result.exit_code == 2 and (
        "--calibrate chooses the max-shift mode's sets itself; it takes none of --params, --sigmoid, "
        "--no-shift, --objective" in said
    )
    assert not (tmp_path / "o.onnx").exists()


def test_calibrate_with_missing_data_is_one_line(tmp_path):
    result = invoke("rewrite", BUNDLED, "-o", tmp_path / "o.onnx", "--calibrate", tmp_path / "none.npz")
    assert result.exit_code == 1 and "no such file" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.onnx").exists()


def test_calibrate_the_bundled_model_end_to_end(tmp_path):
    out = tmp_path / "cal.onnx"
    result = invoke(
        "rewrite", BUNDLED, "-o", out, "--calibrate", "digits", "--calibrate-samples", "16",
        "--calibrate-rounds", "1", "--steps", "6", "--json",
    )  # fmt: skip
    record = json.loads(result.output)
    assert [c["name"] for c in record["calibration"]] == [s["name"] for s in record["sites"]]
    assert all(c["rows"] == 16 * 4 * 17 // 2 and c["length"] == 17 for c in record["calibration"])
    model = onnx.load(str(out))
    nodes = [n for n in model.graph.node if n.op_type == "SpikingSoftmax"]
    chosen = {c["name"]: c["chosen"] for c in record["calibration"]}
    candidates = {c["name"]: c["candidates"] for c in record["calibration"]}
    for node, site in zip(nodes, record["sites"]):
        thresholds = next(list(a.floats) for a in node.attribute if a.name == "thresholds")
        label = chosen[site["name"]]
        assert label in candidates[site["name"]] and len(candidates[site["name"]]) == 3
        for objective in ("softmax", "exp-rmse"):
            shipped = shipped_params(6, SHIFT_RANGE, objective).thresholds
            if label == f"shipped {objective}":
                np.testing.assert_allclose(thresholds, shipped, rtol=1e-6)
            else:  # a polished set: its own thresholds reach the written node
                assert not np.allclose(thresholds, shipped, rtol=1e-6), (label, objective)
    table = invoke("rewrite", BUNDLED, "-o", out, "--force", "--calibrate", "digits", "--calibrate-samples", "8",
                   "--calibrate-rounds", "0", "--steps", "6")  # fmt: skip
    assert table.exit_code == 0 and "KL chosen" in table.output and "shipped " in table.output


def test_ensemble_site_sets_are_refused():
    from sit_onnx.neurons.fit import fit_ensemble

    model = two_sites()
    ensemble = fit_ensemble(shipped_params(4, SHIFT_RANGE), 2)
    with pytest.raises(SitOnnxError, match="K=4 x 2 neurons; every site needs K=4, one neuron"):
        rewrite_model(model, RewriteOptions(steps=4), site_params={"wide_rows": ensemble})


def test_choices_follow_the_held_out_half(calibrated):
    """The figures are those of the odd rows (the held-out half), the set polished is the better
    shipped one, and its objective is the softmax rows'."""
    from sit_onnx.neurons import si_exp
    from sit_onnx.neurons.objective import rows_from_logits, score

    model, feeds, choices = calibrated
    logits = feeds["x"].astype(np.float64) * 6.0  # the wide site's input, rows along the last axis
    held_out = rows_from_logits(logits.reshape(-1, 5)[1::2], -1, seed=1)
    wide = choices[0]
    assert wide.shifted_p01 == pytest.approx(np.percentile(held_out.x, 1))
    for objective in ("softmax", "exp-rmse"):
        params = shipped_params(4, SHIFT_RANGE, objective)
        exact = score(held_out, si_exp(held_out.x, params))  # the set's own weights, not re-solved
        assert wide.candidates[f"shipped {objective}"]["l1"] == pytest.approx(exact.l1, rel=0.02)
    for c in choices:
        shipped = {k: v["value"] for k, v in c.candidates.items() if k.startswith("shipped")}
        polished = next(k for k in c.candidates if k.startswith("polished from"))
        assert polished == f"polished from {min(shipped, key=shipped.get)}"
        if c.chosen == polished:
            assert c.params.meta["objective"] == "softmax" and c.params.meta["polish_rounds"] == 1


def test_progress_ticks_once_per_site_and_a_single_row_site_is_used_whole():
    model = softmax_model([1, 7], -1, name="one_row")
    ticks = []
    feeds = {"x": np.linspace(-3, 3, 7, dtype=np.float32)[None]}
    (choice,) = choose_site_params(model, feeds, steps=4, rounds=0, progress=ticks.append)
    assert ticks == [1] and (choice.rows, choice.length) == (1, 7)


def test_masked_logits_do_not_set_the_reported_range():
    """An attention mask's -3.4e38 carries no weight: the reported low end is that of the logits
    that do (it printed -3.4e38 before); rows whose only live logit is their maximum report 0."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["p"], axis=-1, name="masked")],
        "masked",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(3).normal(size=(64, 8)).astype(np.float32)
    x[:, 5:] = np.finfo(np.float32).min
    x[:, 4] = -200.0  # no weight either: e^-200 is 0 in float32
    (choice,) = choose_site_params(model, {"x": x}, steps=4, rounds=0)
    live = x[1::2, :4] - x[1::2, :4].max(axis=1, keepdims=True)
    assert choice.shifted_p01 == pytest.approx(np.percentile(live, 1), rel=1e-6)
    x[:, 4] = -103.0  # a weight float32 still holds (a subnormal): counted
    (near,) = choose_site_params(model, {"x": x}, steps=4, rounds=0)
    assert -104 < near.shifted_p01 < -90
    silent = np.full((4, 8), np.finfo(np.float32).min, np.float32)
    silent[:, 0] = 0.0
    (alone,) = choose_site_params(model, {"x": silent}, steps=4, rounds=0)
    assert alone.shifted_p01 == 0.0


def test_rows_per_site_are_capped(calibrated, monkeypatch):
    import sit_onnx.evaluate.site_params as site_params

    model, feeds, _ = calibrated
    monkeypatch.setattr(site_params, "ROWS_PER_SITE", 7)
    choices = site_params.choose_site_params(model, feeds, steps=4, rounds=0)
    assert [c.rows for c in choices] == [7, 7]


def test_long_rows_are_drawn_fewer_by_their_element_count():
    """A CTC head's 6,625 classes: 30 rows per half (200,000 elements), not 1,500 (4 minutes of
    polish per site before); never fewer than 16, never more than 1,500."""
    from sit_onnx.evaluate.site_params import rows_per_half

    assert [rows_per_half(n) for n in (1, 17, 133, 134, 6625, 12_500, 12_501, 10**7)] == [
        1500, 1500, 1500, 1492, 30, 16, 16, 16,
    ]  # fmt: skip
    model = softmax_model(["b", 8000], -1, name="long")
    x = np.random.default_rng(5).normal(0, 3, (80, 8000)).astype(np.float32)
    (choice,) = choose_site_params(model, {"x": x}, steps=4, rounds=0)
    assert (choice.rows, choice.length) == (25, 8000)


def test_polish_uses_the_even_rows_and_figures_the_odd_ones(calibrated):
    """Redo the wide site's choice by hand: polish the better shipped set on the even rows, score every
    candidate on the odd rows (seed 1), choose the lowest value."""
    from sit_onnx.evaluate.site_params import ROWS_PER_SITE
    from sit_onnx.neurons.fit import FitOptions, SoftmaxTarget, fit_si_exp
    from sit_onnx.neurons.objective import rows_from_logits

    _, feeds, choices = calibrated
    flat = (feeds["x"].astype(np.float32) * np.float32(6.0)).astype(np.float64).reshape(-1, 5)
    fit_rows = rows_from_logits(flat[0::2], -1, limit=ROWS_PER_SITE)
    target = SoftmaxTarget(rows_from_logits(flat[1::2], -1, limit=ROWS_PER_SITE, seed=1), SHIFT_RANGE)
    wide = choices[0]
    values = {}
    for objective in ("softmax", "exp-rmse"):
        p = shipped_params(4, SHIFT_RANGE, objective)
        values[f"shipped {objective}"] = target.row_score(p.thresholds, p.resets, p.weights).value
    best = min(values, key=values.get)
    polished = fit_si_exp(FitOptions(steps=4, input_range=SHIFT_RANGE, objective="softmax", rows=fit_rows,
                                     warm_start=shipped_params(4, SHIFT_RANGE, best.split(" ", 1)[1]),
                                     polish_rounds=1))  # fmt: skip
    values[f"polished from {best}"] = target.row_score(polished.thresholds, polished.resets, polished.weights).value
    assert {k: v["value"] for k, v in wide.candidates.items()} == pytest.approx(values, rel=1e-9)
    assert wide.chosen == min(values, key=values.get)


def test_calibration_table_is_the_json(tmp_path):
    from tests.helpers import parse_table

    model, data = tmp_path / "two.onnx", tmp_path / "x.npz"
    onnx.save(two_sites(), str(model))
    np.savez(data, x=np.random.default_rng(4).normal(size=(24, 6, 5)).astype(np.float32))
    args = ["rewrite", model, "--calibrate", data, "--calibrate-samples", "24", "--calibrate-rounds", "0", "-k", "4"]
    text = invoke(*args, "-o", tmp_path / "t.onnx").output
    record = json.loads(invoke(*args, "-o", tmp_path / "j.onnx", "--json").output)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "p1 shifted" in line)
    header, rows = parse_table("\n".join(lines[start:]))
    assert header == [
        "site",
        "rows",
        "n",
        "p1 shifted",
        "set",
        "error default",
        "error chosen",
        "KL default",
        "KL chosen",
        "worst default",
        "worst chosen",
    ]
    assert len(rows) == len(record["calibration"]) == 2
    for row, c in zip(rows, record["calibration"], strict=True):
        default, chosen = c["candidates"]["shipped softmax"], c["candidates"][c["chosen"]]
        assert row[:5] == [c["name"], str(c["rows"]), str(c["length"]), f"{c['shifted_p01']:.2f}", c["chosen"]]
        expected = [figures[key] for key in ("value", "kl", "worst") for figures in (default, chosen)]
        assert len(row) == 11 and [float(cell) for cell in row[5:]] == pytest.approx(expected, rel=2e-3)
        assert float(row[6]) <= float(row[5]) * (1 + 2e-3)  # the choice never scores worse than the default
    assert [r[2] for r in rows] == ["5", "6"]  # the row-wise site, then the column-wise one


def _named(names) -> onnx.ModelProto:
    model = two_sites()
    for node, name in zip([n for n in model.graph.node if n.op_type == "Softmax"], names):
        node.name = name
    return model


def test_sites_whose_nodes_have_no_name_keep_their_own_sets(calibrated):
    """onnx's helpers write nodes without names: the two sites were both "", so the calibrated sets,
    keyed by site name, collapsed into one (the last) and `--nodes` could select neither."""
    _, feeds, named = calibrated
    model = _named(["", ""])
    choices = choose_site_params(model, feeds, steps=4, rounds=1)
    assert [c.name for c in choices] == ["softmax@p1", "softmax@p2"]
    assert [c.params.thresholds for c in choices] == [c.params.thresholds for c in named]  # what named sites get
    new, report = rewrite_model(model, RewriteOptions(steps=4), site_params={c.name: c.params for c in choices})
    nodes = [n for n in new.graph.node if n.op_type == "SpikingSoftmax"]
    for node, c in zip(nodes, choices):
        np.testing.assert_allclose(attributes(node)["thresholds"], c.params.thresholds, rtol=1e-6)
    _, one = rewrite_model(model, RewriteOptions(steps=4, nodes=("softmax@p2",)))
    assert [s.converted for s in one.sites] == [False, True]


def test_sites_whose_nodes_share_a_name_are_told_apart():
    """A name two nodes carry (onnxruntime refuses such a model; the rewrite reads it) names neither."""
    _, report = rewrite_model(_named(["sm", "sm"]), RewriteOptions(steps=4, nodes=("sm@p1",)))
    assert [(s.name, s.converted) for s in report.sites] == [("sm@p1", True), ("sm@p2", False)]
    _, named = rewrite_model(_named(["first", ""]), RewriteOptions(steps=4))
    assert [s.name for s in named.sites] == ["first", "softmax@p2"]  # a unique name is kept as it is


@pytest.mark.parametrize("count, held_out", [(2, 1), (3, 1), (4, 2)])
def test_a_site_of_a_few_rows_is_figured_on_its_odd_rows_only(count, held_out):
    """Two rows: one polished, one held out; never the polished row in the figures too."""
    model = softmax_model([count, 7], -1, name="few")
    feeds = {"x": np.random.default_rng(count).normal(0, 3, (count, 7)).astype(np.float32)}
    (choice,) = choose_site_params(model, feeds, steps=4, rounds=0)
    assert (choice.rows, choice.length) == (held_out, 7)
