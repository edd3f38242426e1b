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
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_relative_weighting_recorded(tmp_path):
    out = tmp_path / "rel.json"
    result = invoke(*quick_fit(out, "-12", "0"), "--weighting", "relative")
    assert result.exit_code == 0, result.output
    params = load_params(out)
    assert params.meta["weighting"] == "relative" and params.meta["init"] == "spread"
