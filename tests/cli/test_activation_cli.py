"""`--activations` and `--activation-params` end to end through the CLI, and `neuron fit|show --function`."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.activation import activation_quality, load_activation, shipped_activation, spiking_activation
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.cli.test_rewrite_cli import assert_one_line_error, invoke
from tests.graph.test_activation_rewrite import _erf_torch, _model, _x
from tests.helpers import parse_table, run


@pytest.fixture
def gelu_path(tmp_path):
    nodes, consts = _erf_torch()
    model = _model(
        nodes
        + [helper.make_node("Tanh", ["y"], ["t"], name="tanh"), helper.make_node("Softmax", ["t"], ["z"], name="sm")],
        consts,
    )
    model.graph.output[0].name = "z"
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def test_rewrite_converts_the_asked_activations_and_reports_them(gelu_path, tmp_path):
    out = tmp_path / "out.onnx"
    result = invoke("rewrite", gelu_path, "-o", out, "--activations", "gelu,tanh", "-k", "8")
    assert result.exit_code == 0, result.output
    assert "1 of 1 softmax sites converted, 2 activations" in result.output
    header, rows = parse_table(result.output[result.output.index("activation  ") :])
    assert header == ["activation", "graph", "function", "form", "set", "range", "K"]
    assert rows == [
        ["erf", "main", "gelu", "Erf form", "gelu", "[-4.0, 4.0]", "8"],
        ["tanh", "main", "tanh", "Tanh", "tanh", "[-4.0, 4.0]", "8"],
    ]
    converted = onnx.load(str(out))
    assert [n.op_type for n in converted.graph.node] == ["SpikingActivation", "SpikingActivation", "SpikingSoftmax"]
    x = _x()
    inner = spiking_activation(spiking_activation(x, shipped_activation("gelu", 8)), shipped_activation("tanh", 8))
    got = run(converted, {"x": x})[0]
    np.testing.assert_allclose(got.sum(axis=-1), 1, atol=1e-5)
    softmax_set = shipped_params(8, SHIFT_RANGE)  # the softmax after them: the default K=8 set, max-shifted
    np.testing.assert_allclose(got, spiking_softmax(inner, softmax_set, options=SoftmaxOptions(shift=True)), atol=1e-6)


def test_activations_take_their_own_steps_end_to_end(gelu_path, tmp_path):
    """`-k 8 --activation-steps 16`: the softmax keeps its K=8 set, both activations take K=16, and
    the file runs on the function bodies (plain onnxruntime) as the references compose."""
    out = tmp_path / "out.onnx"
    args = ("-o", out, "--activations", "gelu,tanh", "-k", "8", "--activation-steps", "16")
    result = invoke("rewrite", gelu_path, *args)
    assert result.exit_code == 0, result.output
    _, rows = parse_table(result.output[result.output.index("activation  ") :])
    assert [r[-1] for r in rows] == ["16", "16"]
    assert "(K=8, shift" in result.output
    converted = onnx.load(str(out))
    steps = {
        n.op_type: len(next(a.floats for a in n.attribute if a.name == "thresholds")) for n in converted.graph.node
    }
    assert steps == {"SpikingActivation": 16, "SpikingSoftmax": 8}
    x = _x()
    inner = spiking_activation(spiking_activation(x, shipped_activation("gelu", 16)), shipped_activation("tanh", 16))
    expected = spiking_softmax(inner, shipped_params(8, SHIFT_RANGE), options=SoftmaxOptions(shift=True))
    np.testing.assert_allclose(run(converted, {"x": x})[0], expected, atol=1e-6)
    record = json.loads(invoke("rewrite", gelu_path, *args, "--force", "--json").output)
    assert record["steps"] == 8 and record["options"]["activation_steps"] == 16
    assert [a["steps"] for a in record["activations"]] == [16, 16]


def test_rewrite_json_and_explain_list_the_activations_and_misses(gelu_path, tmp_path):
    result = invoke("rewrite", gelu_path, "-o", tmp_path / "a.onnx", "--activations", "gelu,silu", "--json")
    record = json.loads(result.output)
    assert [(a["function"], a["form"], a["replaced_with"]) for a in record["activations"]] == [
        ("gelu", "Erf form", ["SpikingActivation"])
    ]
    assert record["activation_misses"] == [
        {
            "name": "tanh",
            "graph": "main",
            "function": "Tanh",
            "reason": "no GELU (tanh form): 't' feeds Softmax, not one Add",
        }
    ]
    explained = invoke("rewrite", gelu_path, "-o", tmp_path / "b.onnx", "--activations", "silu", "--explain")
    assert explained.exit_code == 0, explained.output
    assert "1 of 1 softmax sites converted, 0 activations" in explained.output


def test_explain_says_why_a_tanh_is_no_gelu(gelu_path, tmp_path):
    result = invoke("rewrite", gelu_path, "-o", tmp_path / "a.onnx", "--activations", "gelu", "--explain")
    assert result.exit_code == 0, result.output
    assert (
        "not an activation site: Tanh node 'tanh' in graph main: no GELU (tanh form): 't' feeds Softmax, not one Add"
    ) in result.output


def test_without_the_flag_no_activation_is_touched(gelu_path, tmp_path):
    out = tmp_path / "out.onnx"
    assert invoke("rewrite", gelu_path, "-o", out).exit_code == 0
    assert "Erf" in [n.op_type for n in onnx.load(str(out)).graph.node]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--activations", "relu"], "unknown activation 'relu'"),
        (["--activations", "gelu", "-k", "6"], "no shipped gelu set for K=6"),
        (["--activation-params", "missing.json", "--activations", "gelu"], "activation file not found"),
        (
            ["--activation-steps", "16"],
            "--activation-steps sets the K of converted activations; --activations names none",
        ),
        (
            ["--activation-form", "gated"],
            "--activation-form gated shapes converted activations; --activations names none",
        ),
        (["--calibrate-samples", "8"], "--calibrate-samples serves --calibrate, which is not given"),
        (["--calibrate-rounds", "1"], "--calibrate-rounds serves --calibrate, which is not given"),
        (["--activations", "gelu", "--activation-steps", "20"], "no shipped gelu set for K=20"),
        (["--activations", "gelu", "--activation-steps", "0"], "'--activation-steps': 0 is not in the range 1<=x<=64"),
    ],
)
def test_bad_activation_flags_are_one_line_errors(gelu_path, tmp_path, args, message):
    out = tmp_path / "out.onnx"
    result = invoke("rewrite", gelu_path, "-o", out, *args)
    usage = "relu" in args or "0" in args or args[0].startswith("--calibrate")
    assert_one_line_error(result, message, code=2 if usage else 1)
    assert not out.exists()


def test_neuron_fit_and_show_an_activation(tmp_path):
    path = tmp_path / "g.json"
    result = invoke(
        "neuron",
        "fit",
        "--function",
        "gelu",
        "-k",
        "4",
        "--range",
        "-3",
        "3",
        "--restarts",
        "1",
        "--iterations",
        "20",
        "--polish-rounds",
        "1",
        "-o",
        path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    fitted = load_activation(path)
    assert record["range"] == [-3.0, 3.0] and fitted.input_range == (-3.0, 3.0) and record["bias"] == fitted.bias
    shown = invoke("neuron", "show", "--function", "gelu", "--params", path, "--json")
    assert json.loads(shown.output)["rmse"] == record["rmse"]
    wrong = invoke("neuron", "show", "--function", "tanh", "--params", path)
    assert_one_line_error(wrong, "holds a gelu set, not tanh", code=2)


def test_neuron_fit_activation_defaults_to_the_function_range(tmp_path):
    path = tmp_path / "s.json"
    result = invoke(
        "neuron",
        "fit",
        "--function",
        "silu",
        "-k",
        "3",
        "--restarts",
        "1",
        "--iterations",
        "10",
        "--polish-rounds",
        "0",
        "-o",
        path,
    )
    assert result.exit_code == 0, result.output
    assert "silu K=3 on [-8, 8]" in result.output and load_activation(path).input_range == (-8.0, 8.0)


@pytest.mark.parametrize(
    "flag", [["--objective", "softmax"], ["--neurons", "2"], ["--weighting", "relative"], ["--rows", "logits.npz"]]
)
def test_neuron_fit_refuses_exp_only_flags_for_activations(tmp_path, flag):
    result = invoke("neuron", "fit", "--function", "tanh", "-o", tmp_path / "t.json", *flag)
    assert_one_line_error(result, f"{flag[0]} serves the exp fit only, not --function tanh", code=2)
    assert not (tmp_path / "t.json").exists()


def _weighted_rmse(params, x):
    from sit_onnx.neurons.activation import activation_function

    return float(np.sqrt(np.mean((spiking_activation(x, params) - activation_function("gelu").exact(x)) ** 2)))


def test_neuron_fit_inputs_weight_the_error_where_they_fall(tmp_path):
    """A polish from the shipped set weighted by N(1.5, 0.3^2) serves those inputs better than the
    uniformly fitted set does, and the set records what weighted it."""
    path = tmp_path / "g.json"
    result = invoke(
        "neuron", "fit", "--function", "gelu", "-k", "8", "--warm-start", "shipped",
        "--inputs", "normal:1.5,0.3", "--polish-rounds", "3", "-o", path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    fitted, shipped = load_activation(path), shipped_activation("gelu", 8)
    x = np.random.default_rng(1).normal(1.5, 0.3, 20_000).astype(np.float32)
    assert _weighted_rmse(fitted, x) < 0.8 * _weighted_rmse(shipped, x)
    assert fitted.neuron.meta["inputs"] == "normal:1.5,0.3" and fitted.neuron.meta["weighted_by_samples"] == 200_000
    assert fitted.neuron.meta["warm_start"] == shipped.neuron.method


def test_neuron_fit_inputs_from_an_npz_count_its_finite_numbers(tmp_path):
    data = tmp_path / "x.npz"
    np.savez(data, a=np.array([0.5, np.nan, 1.0, np.inf]), b=np.full((3, 2), 2.0, np.float32), ids=np.array(["t"]))
    path = tmp_path / "g.json"
    result = invoke(
        "neuron", "fit", "--function", "gelu", "-k", "8", "--warm-start", "shipped",
        "--inputs", data, "--polish-rounds", "1", "-o", path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_activation(path).neuron.meta["weighted_by_samples"] == 8  # 0.5, 1.0 and six 2.0s


def test_neuron_fit_activation_warm_start_from_a_file(tmp_path):
    start = tmp_path / "start.json"
    shipped_activation("gelu", 8).save(start)
    path = tmp_path / "g.json"
    args = ["--function", "gelu", "-k", "8", "--warm-start", start, "--polish-rounds", "0", "-o", path]
    result = invoke("neuron", "fit", *args)
    assert result.exit_code == 0, result.output
    fitted = load_activation(path)
    assert fitted.neuron.thresholds == shipped_activation("gelu", 8).neuron.thresholds  # nothing polished
    assert "inputs" not in fitted.neuron.meta


@pytest.mark.parametrize(
    "args, text, code",
    [
        (
            ["--function", "gelu", "--inputs", "normal:a"],
            "Invalid value for --inputs: 'normal:a': write normal:MU,SD",
            2,
        ),
        (
            ["--function", "gelu", "--inputs", "normal:-1,0"],
            "Invalid value for --inputs: 'normal:-1,0': need a finite MU and SD > 0",
            2,
        ),
        (["--function", "gelu", "--inputs", "normal:nan,1"], "need a finite MU and SD > 0", 2),
        (["--function", "gelu", "--inputs", "missing.npz"], "Invalid value for --inputs: missing.npz: no such file", 2),
        (["--inputs", "normal:0,1"], "--inputs serves the activation fits (--function), not exp", 2),
        (["--function", "gelu", "--warm-start", "missing.json"], "Invalid value for --warm-start: missing.json", 2),
        (["--function", "silu", "-k", "8", "--warm-start", "SET"], "warm start: a gelu set of K=8; need silu, K=8", 1),
        (["--function", "gelu", "-k", "10", "--warm-start", "SET"], "need gelu, K=10", 1),
    ],
)
def test_neuron_fit_activation_input_and_start_errors(tmp_path, monkeypatch, args, text, code):
    monkeypatch.chdir(tmp_path)
    shipped_activation("gelu", 8).save(tmp_path / "set.json")
    args = [str(tmp_path / "set.json") if a == "SET" else a for a in args]
    result = invoke("neuron", "fit", *args, "-o", tmp_path / "out.json")
    assert_one_line_error(result, text, code=code)
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("arrays", [{"a": [np.nan, np.inf], "ids": ["t"]}, {"ids": ["t", "u"]}])
def test_neuron_fit_inputs_npz_without_numbers_is_refused(tmp_path, arrays):
    data = tmp_path / "x.npz"
    np.savez(data, **{name: np.array(values) for name, values in arrays.items()})
    result = invoke("neuron", "fit", "--function", "gelu", "--inputs", data, "-o", tmp_path / "out.json")
    assert_one_line_error(result, "Invalid value for --inputs: " + str(data) + ": holds no finite numbers", code=2)


def test_neuron_fit_inputs_are_seeded_draws():
    from sit_onnx.cli.neuron import _activation_inputs

    first, again, other = (_activation_inputs("normal:-1,2", seed) for seed in (3, 3, 4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.size == 200_000 and abs(first.mean() + 1) < 0.02 and abs(first.std() - 2) < 0.02


def test_neuron_fit_with_inputs_is_reproducible(tmp_path):
    outputs = []
    for name in ("a.json", "b.json"):
        args = ["--function", "gelu", "-k", "8", "--warm-start", "shipped", "--inputs", "normal:0,1"]
        result = invoke("neuron", "fit", *args, "--polish-rounds", "1", "--seed", "5", "-o", tmp_path / name, "--json")
        assert result.exit_code == 0, result.output
        record = json.loads(result.output)
        assert (
            record["tails"] == list(shipped_activation("gelu", 8).tails)
            and record["bias"] == load_activation(tmp_path / name).bias
        )
        outputs.append((tmp_path / name).read_text())
    assert outputs[0] == outputs[1]


def test_neuron_show_prints_the_shipped_activation_set():
    result = invoke("neuron", "show", "--function", "sigmoid", "-k", "8")
    assert result.exit_code == 0, result.output
    assert "SpikingActivation sigmoid K=8 fitted on [-8, 8]" in result.output
    assert "tails: 0*x + 0 below -8, 0*x + 1 above 8" in result.output
    assert "weighted" not in result.output  # fitted on the range alone
    _, rows = parse_table(result.output)
    assert len(rows) == 8


def test_neuron_show_activation_prints_the_set_itself():
    """Every figure `neuron show --function` prints, in text and --json, is the set's own."""
    params = shipped_activation("gelu", 12)
    quality = activation_quality(params)
    record = json.loads(invoke("neuron", "show", "--function", "gelu", "-k", "12", "--json").output)
    n = params.neuron
    assert record["bias"] == params.bias and record["tails"] == list(params.tails)
    assert record["thresholds"] == list(n.thresholds) and record["resets"] == list(n.resets)
    assert record["weights"] == list(n.weights) and record["method"] == n.method
    assert record["rmse"] == quality.rmse and record["max_error"] == quality.max_error
    text = invoke("neuron", "show", "--function", "gelu", "-k", "12").output
    assert f"  RMSE {quality.rmse:.6g}, max error {quality.max_error:.6g} over 100,000 uniform points\n" in text
    assert f"  expected spikes per input: {quality.mean_spikes:.3f} of 12 steps; bias {params.bias:.6g}\n" in text
    header, rows = parse_table(text)
    assert header == ["t", "T(t)", "h(t)", "d(t)"]
    assert [int(r[0]) for r in rows] == list(range(1, 13))
    np.testing.assert_allclose(
        [[float(v) for v in r[1:]] for r in rows], np.array([n.thresholds, n.resets, n.weights]).T, rtol=1e-3
    )


def test_neuron_show_says_what_weighted_a_gelu_set():
    result = invoke("neuron", "show", "--function", "gelu", "-k", "12")
    assert "  error weighted by where these inputs fall: normal:-1.2,1.25\n" in result.output
    shown = json.loads(invoke("neuron", "show", "--function", "gelu", "-k", "12", "--json").output)
    assert shown["inputs"] == "normal:-1.2,1.25"
    assert json.loads(invoke("neuron", "show", "--function", "tanh", "--json").output)["inputs"] is None


def test_an_activation_file_whose_range_float32_cannot_hold_is_one_line_and_no_output(gelu_path, tmp_path):
    record = json.loads(shipped_activation("tanh", 8).to_json())
    record["neuron"]["input_range"] = [-1e39, 4.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    out = tmp_path / "out.onnx"
    result = invoke("rewrite", gelu_path, "-o", out, "-k", "8", "--activations", "tanh", "--activation-params", bad)
    assert_one_line_error(result, "must stay finite with LO < HI in float32")
    assert not out.exists()


def test_eval_and_energy_take_the_activations_own_steps(gelu_path, tmp_path):
    """--activation-steps reaches eval's and energy's conversion: GELU and Tanh at K=16 beside the
    K=8 softmax set are closer to the original than at K=8, and their neurons count other spikes."""
    data = tmp_path / "x.npz"
    np.savez(data, x=_x())
    base = ("--data", data, "--activations", "gelu,tanh", "-k", "8", "--json")
    evals = [json.loads(invoke("eval", gelu_path, *base, *more).output) for more in ((), ("--activation-steps", "16"))]
    cosines = [e["outputs"][0]["cosine"] for e in evals]
    assert cosines[1] > cosines[0]
    energies = [
        json.loads(invoke("energy", gelu_path, *base, *more).output) for more in ((), ("--activation-steps", "16"))
    ]
    assert energies[0]["neuron_ops"] != energies[1]["neuron_ops"]


def test_neuron_fit_hops_reach_both_fits_from_the_command_line(tmp_path):
    """`--hops N` on an activation fit and on an exp fit: recorded in the set, error no higher than
    the same fit without hops; a negative count is a usage error."""
    common = ("--function", "tanh", "-k", "8", "--warm-start", "shipped", "--polish-rounds", "0", "--json")
    plain = json.loads(invoke("neuron", "fit", *common, "-o", tmp_path / "a.json").output)
    hopped = json.loads(invoke("neuron", "fit", *common, "--hops", "3", "-o", tmp_path / "b.json").output)
    assert hopped["rmse"] < plain["rmse"]
    assert load_activation(tmp_path / "b.json").neuron.meta["hops"] == 3
    exp = ("-k", "4", "--range", "-1", "1", "--warm-start", "shipped", "--polish-rounds", "0", "--json")
    result = invoke("neuron", "fit", *exp, "--hops", "2", "-o", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    from sit_onnx.neurons.params import load_params

    saved = load_params(tmp_path / "c.json")
    assert saved.meta["hops"] == 2 and saved.method.endswith("2 basin hops")
    refused = invoke("neuron", "fit", *exp, "--hops", "-1", "-o", tmp_path / "d.json")
    assert_one_line_error(refused, "'--hops': -1 is not in the range 0<=x<=100000", code=2)
