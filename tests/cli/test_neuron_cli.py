import json

import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from sit_onnx.neurons import load_params


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def quick_fit(out, lo, hi):
    """A K=3 fit small enough for a test: one short restart, one polish round."""
    return [
        "neuron",
        "fit",
        "-k",
        "3",
        "--range",
        lo,
        hi,
        "-o",
        out,
        "--restarts",
        "1",
        "--iterations",
        "30",
        "--polish-rounds",
        "1",
    ]


def test_show_json_fields():
    result = invoke("neuron", "show", "--steps", "12", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["steps"] == 12 and record["range"] == [-1.0, 1.0] and record["points"] == 100_000
    assert 0 < record["rmse"] < record["max_error"] < 0.2
    assert 0 < record["mean_spikes"] <= 12 and len(record["thresholds"]) == 12


def test_show_table_for_shift_set():
    result = invoke("neuron", "show", "--steps", "12", "--range", "-12", "0")
    assert (
        result.exit_code == 0 and "fitted on [-12, 0]" in result.output and "expected spikes per input" in result.output
    )


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["neuron", "show", "--steps", "5"], 1, "no shipped parameter set for K=5"),
        (["neuron", "show", "--range", "1", "-1"], 2, "need finite LO < HI"),
        (["neuron", "show", "--steps", "x"], 2, "not a valid integer"),
        (["neuron", "fit", "--steps", "0", "-o", "p.json"], 2, "0 is not in the range"),
        (["neuron", "fit", "--range", "0", "nan", "-o", "p.json"], 2, "need finite LO < HI"),
        (["neuron", "show", "--params", "missing.json"], 1, "parameter file not found"),
        (["neuron", "fit", "--init", "zeros", "-o", "p.json"], 2, "'zeros' is not one of"),
        (["neuron", "fit", "--objective", "kl", "-o", "p.json"], 2, "'kl' is not one of"),
        (
            ["neuron", "fit", "--objective", "softmax", "--range", "-1", "1", "-o", "p.json"],
            1,
            "range [LO, 0]; got HI=1",
        ),
        (["neuron", "fit", "--rows", "r.npz", "-o", "p.json"], 2, "softmax objective only"),
        (["neuron", "fit", "--warm-start", "missing.json", "-o", "p.json"], 1, "parameter file not found"),
        (
            ["neuron", "fit", "-k", "5", "--warm-start", "shipped", "-o", "p.json"],
            1,
            "no shipped parameter set for K=5",
        ),
        (["neuron", "show", "--objective", "softmax", "--range", "-1", "1"], 1, "fitted to softmax"),
        (["neuron", "fit", "--seed", "-5", "-o", "p.json"], 2, "'--seed': -5 is not in the range x>=0"),  # numpy's rng
        (["neuron", "fit", "--function", "gelu", "--seed", "-1", "-o", "p.json"], 2, "-1 is not in the range x>=0"),
        (["neuron", "show", "--function", "gelu", "--range", "-1", "1"], 2, "--range picks a shipped SI-exp set, not"),
        (["neuron", "show", "--function", "tanh", "--objective", "softmax"], 2, "--objective picks a shipped SI-exp"),
    ],
)
def test_bad_arguments(args, code, text):
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert text in result.output and "Traceback" not in result.output


def test_fit_writes_a_loadable_set(tmp_path):
    out = tmp_path / "p.json"
    args = quick_fit(out, "-1", "1") + ["--json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    params = load_params(out)
    assert params.steps == 3 and params.rmse == pytest.approx(record["rmse"]) and params.rmse < 0.5
    again = invoke(*args[:-1])
    assert again.exit_code == 1 and "exists (use --force" in again.output
    assert invoke(*args, "--force").exit_code == 0
    # seeded: the same command gives the same numbers
    assert load_params(out).thresholds == params.thresholds


def test_sweep_json_and_plot(tmp_path):
    plot = tmp_path / "fig7.png"
    result = invoke("neuron", "sweep", "--steps", "4", "--steps", "12", "--vectors", "20", "--plot", plot, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert [r["steps"] for r in record["sweep"]] == [4, 12]
    assert record["sweep"][1]["si_exp"]["rmse"] < record["sweep"][0]["si_exp"]["rmse"]
    assert {s["protocol"] for s in record["sweep"][0]["softmax"]} == {"paper", "max-shift"}
    for row in record["sweep"]:  # both objectives' sets, scored both ways
        ours, paper = row["objectives"]["softmax"], row["objectives"]["exp-rmse"]
        assert ours["l1"] < paper["l1"] and ours["worst_mean"] < paper["worst_mean"] and ours["exp_rmse"] > 0
        assert ours["kl"] > 0 and paper["kl"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = invoke("neuron", "sweep", "--steps", "8", "--vectors", "10")
    assert table.exit_code == 0 and "KL (softmax)" in table.output and "worst (exp-rmse)" in table.output


def test_fit_relative_weighting_recorded(tmp_path):
    out = tmp_path / "rel.json"
    result = invoke(*quick_fit(out, "-12", "0"), "--weighting", "relative")
    assert result.exit_code == 0, result.output
    params = load_params(out)
    assert params.meta["weighting"] == "relative" and params.meta["init"] == "spread"


def _softmax_fit(out, *extra):
    return [
        "neuron", "fit", "-k", "4", "--range", "-12", "0", "--objective", "softmax",
        "--warm-start", "shipped", "--polish-rounds", "1", "-o", out, *extra,
    ]  # fmt: skip


def test_fit_softmax_objective_from_the_shipped_set(tmp_path):
    out = tmp_path / "s.json"
    result = invoke(*_softmax_fit(out, "--json"))
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["objective"] == "softmax" and record["rows"]["kl"] > 0 and 0 < record["rows"]["worst"] < 1
    params = load_params(out)
    assert params.meta["objective"] == "softmax" and params.meta["init"] == "warm start"
    assert params.meta["rows"].startswith("N(0, sigma^2) rows")
    text = invoke(*_softmax_fit(out, "--force"))
    assert "fitted to softmax" in text.output and "as Spiking-Softmax on held-out" in text.output


def test_fit_softmax_objective_on_real_logits(tmp_path):
    import numpy as np

    logits = tmp_path / "logits.npz"
    rng = np.random.default_rng(0)
    np.savez(logits, a=rng.normal(0, 2, (50, 7)).astype(np.float32), b=rng.normal(0, 1, (4, 9, 3)))
    out = tmp_path / "s.json"
    result = invoke(*_softmax_fit(out, "--rows", logits))
    assert result.exit_code == 0, result.output
    assert load_params(out).meta["rows"] == "86 rows of logits.npz"  # 50 rows of 7, 36 of 3
    np.savez(logits, ids=np.arange(6).reshape(2, 3))
    bad = invoke(*_softmax_fit(out, "--rows", logits, "--force"))
    assert bad.exit_code == 2 and "no floating-point logits" in bad.output
    np.savez(logits, a=np.full((2, 3), np.nan, np.float32))
    empty = invoke(*_softmax_fit(out, "--rows", logits, "--force"))
    assert empty.exit_code == 2 and "no row holds a finite logit" in empty.output


def test_show_reports_both_objectives_figures():
    default = json.loads(invoke("neuron", "show", "--range", "-12", "0", "--json").output)
    paper = json.loads(invoke("neuron", "show", "--range", "-12", "0", "--objective", "exp-rmse", "--json").output)
    assert default["objective"] == "softmax" and paper["objective"] == "exp-rmse"
    assert default["rows"]["worst"] < paper["rows"]["worst"] and default["thresholds"] != paper["thresholds"]
    assert json.loads(invoke("neuron", "show", "--json").output)["rows"] is None  # [-1, 1]: no max-shift rows
    alone = json.loads(invoke("neuron", "show", "--objective", "softmax", "--json").output)  # [-12, 0] implied
    assert alone["thresholds"] == default["thresholds"] and alone["objective"] == "softmax"
    text = invoke("neuron", "show", "--range", "-12", "0")
    assert "as Spiking-Softmax on held-out N(0, sigma^2) rows" in text.output


def test_fit_rows_take_1d_rows_and_single_logits_and_refuse_empty_ones(tmp_path):
    import numpy as np

    logits = tmp_path / "logits.npz"
    rng = np.random.default_rng(1)
    np.savez(logits, one=rng.normal(0, 2, 5), single=rng.normal(0, 1, (3, 1)), many=rng.normal(0, 2, (2, 2, 4)))
    out = tmp_path / "s.json"
    result = invoke(*_softmax_fit(out, "--rows", logits))
    assert result.exit_code == 0, result.output
    assert load_params(out).meta["rows"] == "8 rows of logits.npz"  # 1 row of 5, 3 of 1, 4 of 4
    np.savez(logits, hollow=np.zeros((3, 0), np.float32))
    bad = invoke(*_softmax_fit(out, "--rows", logits, "--force"))
    assert bad.exit_code == 2 and "Invalid value for --rows:" in bad.output
    assert "array 'hollow' is no floating-point logits tensor" in bad.output
    np.savez(logits, a=np.full((2, 3), np.inf, np.float32))
    empty = invoke(*_softmax_fit(out, "--rows", logits, "--force"))
    assert empty.exit_code == 2 and "Invalid value for --rows:" in empty.output


def test_warm_start_shipped_is_the_exp_rmse_set_of_the_range():
    from sit_onnx.cli import neuron as neuron_cli
    from sit_onnx.neurons.params import shipped_params

    start = neuron_cli._warm_start("shipped", 8, (-12, 0))
    want = shipped_params(8, (-12, 0), objective="exp-rmse")
    assert start.thresholds == want.thresholds
    assert start.thresholds != shipped_params(8, (-12, 0)).thresholds  # not the softmax set
    assert neuron_cli._warm_start(None, 8, (-12, 0)) is None


def test_fit_function_passes_every_search_option_and_ticks_its_bar(tmp_path, monkeypatch):
    """`neuron fit --function`: the search flags reach the fit as given (they were not checked:
    a fit that ignored --polish-rounds or --init passed every test), and the fit gets a progress
    callback."""
    import sit_onnx.neurons.activation as activation

    seen = {}

    def spy(function, steps, input_range, seed, progress, **options):
        seen.update(function=function, steps=steps, input_range=input_range, seed=seed, **options)
        progress(1)
        return activation.shipped_activation(function, 8)

    monkeypatch.setattr(activation, "fit_activation", spy)
    out = tmp_path / "gelu.json"
    args = ["neuron", "fit", "--function", "gelu", "-k", "8", "--range", "-3", "3", "--seed", "7", "-o", out]
    search = ["--restarts", "2", "--iterations", "15", "--polish-rounds", "3", "--init", "random", "--hops", "5"]
    result = invoke(*args, *search, "--json")
    assert result.exit_code == 0, result.output
    assert seen == {
        "function": "gelu",
        "steps": 8,
        "input_range": (-3.0, 3.0),
        "seed": 7,
        "restarts": 2,
        "iterations": 15,
        "polish_rounds": 3,
        "init": "random",
        "hops": 5,
        "samples": None,
        "warm_start": None,
    }
    assert json.loads(result.output)["output"] == str(out) and out.exists()


def test_fit_kl_weight_reaches_the_softmax_polish(tmp_path, monkeypatch):
    """`--kl-weight` is the weight of the mean KL in what the softmax objective's polish minimises:
    it reaches FitOptions, the set records it, and a target scores with it."""
    import numpy as np

    import sit_onnx.neurons.fit as fit
    from sit_onnx.neurons import shipped_params
    from sit_onnx.neurons.objective import family_rows

    out = tmp_path / "k4.json"
    args = ["neuron", "fit", "-k", "4", "--range", "-12", "0", "--objective", "softmax", "--warm-start", "shipped"]
    result = CliRunner().invoke(main, [*args, "--kl-weight", "1.5", "--polish-rounds", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    fitted = load_params(out)
    assert fitted.meta["kl_weight"] == 1.5 and "(L1 + worst weight + 1.5 KL)" in fitted.method
    target = fit.SoftmaxTarget(family_rows(0), (-12.0, 0.0), kl_weight=3.0)
    start = shipped_params(4, (-12, 0), objective="exp-rmse")
    th, rs = np.array(start.thresholds), np.array(start.resets)
    figures = target.row_score(th, rs)
    assert target(th, rs) == figures.l1 + figures.worst_mean + 3.0 * figures.kl != figures.value


@pytest.mark.parametrize(
    "args, text",
    [
        (["--kl-weight", "1"], "--kl-weight serves the softmax objective only (add --objective softmax)"),
        (["--function", "tanh", "--kl-weight", "1"], "--kl-weight serves the exp fit only, not --function tanh"),
    ],
)
def test_fit_kl_weight_refused_where_no_kl_is_fitted(tmp_path, args, text):
    result = CliRunner().invoke(main, ["neuron", "fit", *args, "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and f"Error: {text}" in result.output
    assert not (tmp_path / "x.json").exists()


def test_fit_softmax_objective_defaults_to_the_max_shift_range(tmp_path):
    """Without --range it took the paper's [-1, 1] and refused itself ("got HI=1")."""
    out = tmp_path / "s.json"
    args = ["neuron", "fit", "-k", "4", "--objective", "softmax", "--warm-start", "shipped", "--polish-rounds", "1"]
    result = invoke(*args, "-o", out)
    assert result.exit_code == 0, result.output
    assert load_params(out).input_range == (-12.0, 0.0)
    given = invoke(*args, "--range", "-1", "1", "-o", tmp_path / "p.json")
    assert given.exit_code == 1 and "--objective softmax fits the max-shift range [LO, 0]; got HI=1" in given.output
    plain = invoke(
        "neuron", "fit", "-k", "4", "--warm-start", "shipped", "--polish-rounds", "0", "-o", tmp_path / "e.json"
    )
    assert plain.exit_code == 0 and load_params(tmp_path / "e.json").input_range == (-1.0, 1.0)


def test_fit_rows_of_single_logits_alone_are_refused(tmp_path):
    import numpy as np

    logits = tmp_path / "ones.npz"
    np.savez(logits, single=np.random.default_rng(2).normal(size=(6, 1)), with_nan=np.array([[1.0, np.nan]]))
    result = invoke(*_softmax_fit(tmp_path / "s.json", "--rows", logits))
    assert result.exit_code == 2 and "no row holds two finite logits" in result.output, result.output
