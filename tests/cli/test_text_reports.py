"""What the commands print for people says what their --json says for programs: the same figures,
in the stated units, under the stated headings."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.cli.energy import energy_text
from sit_onnx.evaluate.energy import EnergyReport, LayerEnergy
from tests.helpers import attention_classifier, parse_table, softmax_model


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def both(*args):
    """The text and the JSON report of one command on the same arguments."""
    return invoke(*args), json.loads(invoke(*args, "--json"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The one-site attention classifier, with labels the original gets right and a copy without labels."""
    model, x, labels = attention_classifier(np.random.default_rng(3), 120, scale=3.0)
    folder = tmp_path_factory.mktemp("tiny")
    onnx.save(model, str(folder / "tiny.onnx"))
    np.savez(folder / "data.npz", x=x, labels=labels)
    np.savez(folder / "unlabelled.npz", x=x)
    return folder


def close(text: str, value: float, rel=2e-3) -> bool:
    """A figure printed with `{:.4g}` (or fewer digits) against the exact one."""
    return float(text) == pytest.approx(value, rel=rel, abs=1e-12)


def test_energy_table_is_the_json_in_nanojoules(tiny):
    text, record = both("energy", tiny / "tiny.onnx", "--data", tiny / "data.npz", "--samples", "32")
    header, rows = parse_table(text)
    assert header == ["layer", "op", "MACs/sample", "ANN nJ", "converted nJ", "spikes/neuron in"]
    assert len(rows) == len(record["layers"]) + 1
    for row, layer in zip(rows, record["layers"]):
        assert row[:2] == [layer["name"], layer["op"]]
        assert close(row[2], layer["macs"])
        assert close(row[3], layer["ann_pj"] / 1e3) and close(row[4], layer["converted_pj"] / 1e3)
        assert row[5] == ("-" if layer["spike_rate"] is None else f"{layer['spike_rate']:.3f}")
    assert any(row[5] != "-" for row in rows), "the event-driven MatMul shows its input spike rate"
    neurons = rows[-1]
    assert neurons[:2] == ["spiking neurons", "AC"] and neurons[5] == "-"
    assert close(neurons[2], record["neuron_ops"]) and float(neurons[3]) == 0.0
    assert close(neurons[4], record["neuron_ops"] * 0.9 / 1e3)  # E_AC = 0.9 pJ
    total = text.splitlines()[len(rows) + 2]
    assert total == (
        f"total per sample: ANN {record['ann_pj'] / 1e3:.2f} nJ, converted {record['converted_pj'] / 1e3:.2f} nJ "
        f"({100 * record['reduction']:+.1f}% reduction)"
    )
    assert text.splitlines()[-1] == f"note: {record['caveat']}"


def test_energy_text_prints_picojoules_as_nanojoules():
    """Each energy column divides by exactly 1000: figures chosen so that any other divisor shows."""
    report = EnergyReport(
        samples=1,
        layers=[LayerEnergy("proj", "MatMul", 2048.0, 123456.0, 7890.0, 0.25)],
        neuron_ops=43210.0,
        ann_pj=246913.0,
        converted_pj=135791.0,
    )
    header, rows = parse_table(energy_text(report))
    assert rows[0] == ["proj", "MatMul", "2048", "123.5", "7.89", "0.250"]
    assert rows[1] == ["spiking neurons", "AC", "4.321e+04", "0", "38.89", "-"]
    assert "total per sample: ANN 246.91 nJ, converted 135.79 nJ (+45.0% reduction)" in energy_text(report)


def test_eval_lines_are_the_json_in_percent(tiny):
    text, record = both("eval", tiny / "tiny.onnx", "--data", tiny / "data.npz", "--steps", "4")
    lines = text.splitlines()
    assert lines[0] == f"data: {tiny / 'data.npz'}, {record['samples']} samples"
    assert lines[1:] == [
        f"ANN accuracy       {100 * record['ann_accuracy']:6.2f}%",
        f"converted accuracy {100 * record['converted_accuracy']:6.2f}%",
        f"agreement          {100 * record['agreement']:6.2f}%",
        f"conversion loss    {record['loss_points']:+6.2f} points",
    ]
    assert record["ann_accuracy"] == 1.0 and record["samples"] == 120


def test_layers_table_is_the_json(tiny):
    text, record = both("layers", tiny / "tiny.onnx", "--data", tiny / "data.npz", "--steps", "4")
    assert text.splitlines()[0] == f"data: {tiny / 'data.npz'}"
    header, rows = parse_table(text)
    assert header == ["sites converted", "last site converted", "accuracy", "loss (points)", "agreement"]
    assert len(rows) == len(record["rows"]) == 2
    for row, want in zip(rows, record["rows"]):
        assert row[0] == str(want["converted_sites"]) and row[1] == (want["last_site"] or "-")
        assert row[2] == f"{100 * want['accuracy']:.2f}%" and row[4] == f"{100 * want['agreement']:.2f}%"
        assert row[3] == f"{want['loss_points']:+.2f}"


def test_calibrate_table_is_the_json(tiny):
    text, record = both("calibrate", tiny / "tiny.onnx", "--data", tiny / "data.npz")
    header, rows = parse_table(text)
    assert header == ["site", "min", "p1", "median", "p99", "max", "masked", "in [-1,1]", "shifted in [-12,0]"]
    ((row,), (site,)) = rows, record["sites"]
    assert row[0] == site["name"] == "att"
    for cell, key in zip(row[1:6], ["min", "p01", "p50", "p99", "max"]):
        assert close(cell, site[key]), key
    assert row[6] == f"{100 * site['masked']:.1f}%"
    assert row[7] == f"{100 * site['inside_paper_range']:.1f}%"
    assert row[8] == f"{100 * site['inside_shift_range']:.1f}%"
    assert text.splitlines()[-1] == f"att: {site['recommendation']}"


def test_label_free_eval_lines_are_the_json(tiny):
    text, record = both("eval", tiny / "tiny.onnx", "--data", tiny / "unlabelled.npz", "--steps", "4")
    lines = text.splitlines()
    assert lines[0] == (
        f"data: {tiny / 'unlabelled.npz'}, 120 samples, no labels: the converted model against the original"
    )
    ((out,),) = [record["outputs"]]
    assert record["labels"] is False and record["samples"] == 120 and out["name"] == "logits"
    assert lines[1] == (
        f"[logits] argmax agreement {100 * out['agreement']:.2f}%, cosine {out['cosine']:.6f}, "
        f"abs error max {out['max_abs']:.4g} mean {out['mean_abs']:.4g}"
    )
    assert 0 < out["mean_abs"] < out["max_abs"] and out["cosine"] < 1  # K=4 is visibly inexact
    assert len(lines) == 2 and out["constant"] is None


def test_label_free_eval_says_when_the_output_is_one_value(tiny, tmp_path):
    """All-NaN inputs give an all-NaN output: "agreement 100%, cosine 1" on it said the conversion
    was perfect, with nothing to tell it from a real result (compare says so)."""
    x = np.load(tiny / "unlabelled.npz")["x"]
    np.savez(tmp_path / "flat.npz", x=np.full_like(x, np.nan))
    text, record = both("eval", tiny / "tiny.onnx", "--data", tmp_path / "flat.npz", "--steps", "4")
    note = text.splitlines()[2]
    constant = float(note.split("output is ")[1].split(":")[0])
    assert note.startswith("[logits] note: every element of the reference's output is ")
    assert note.endswith(": it cannot show what the conversion changed (compare an earlier tensor, or real weights)")
    assert np.isnan(constant) and len(record["outputs"]) == 1


def test_label_free_layers_table_is_the_json(tiny):
    text, record = both("layers", tiny / "tiny.onnx", "--data", tiny / "unlabelled.npz", "--steps", "4")
    assert text.splitlines()[1] == "no labels: the first output against the original's"
    header, rows = parse_table(text)
    assert header == ["sites converted", "last site converted", "argmax agreement", "cosine"]
    for row, want in zip(rows, record["rows"], strict=True):
        assert row[0] == str(want["converted_sites"]) and row[1] == (want["last_site"] or "-")
        assert row[2] == f"{100 * want['agreement']:.2f}%" and row[3] == f"{want['cosine']:.6f}"
    assert rows[0][3] == "1.000000" and rows[1][3] != "1.000000"


def _headed(tiny, folder, head, kind):
    """The tiny classifier with a first output put before its logits, computed by `head` from them."""
    model = onnx.load(str(tiny / "tiny.onnx"))
    model.graph.node.append(head)
    model.graph.output.insert(0, helper.make_tensor_value_info("first", kind, None))
    onnx.save(model, str(folder / "headed.onnx"))
    return folder / "headed.onnx"


@pytest.mark.parametrize(
    "head, kind, cell",
    [
        (helper.make_node("ArgMax", ["logits"], ["first"], axis=1, keepdims=0), TensorProto.INT64, "%"),
        (helper.make_node("ReduceSum", ["logits"], ["first"], keepdims=0), TensorProto.FLOAT, "-"),
    ],
)
def test_label_free_layers_table_says_what_its_agreement_counts(tiny, tmp_path, head, kind, cell):
    """An integer first output (an ArgMax in the graph) is compared value for value, and the column
    says so; a first output without rows (one number) has no agreement, printed as '-'."""
    text, record = both(
        "layers", _headed(tiny, tmp_path, head, kind), "--data", tiny / "unlabelled.npz", "--steps", "4"
    )
    table_header, rows = parse_table(text)
    header = "values the same" if kind == TensorProto.INT64 else "argmax agreement"
    assert table_header == ["sites converted", "last site converted", header, "cosine"]
    assert [r["agreement_of"] for r in record["rows"]] == ["values" if cell == "%" else "argmax"] * 2
    for row, want in zip(rows, record["rows"], strict=True):
        assert row[2] == ("-" if want["agreement"] is None else f"{100 * want['agreement']:.2f}%")
        assert row[2].endswith(cell)


@pytest.mark.parametrize(
    "head, kind, said",
    [
        (helper.make_node("ArgMax", ["logits"], ["first"], axis=1, keepdims=0), TensorProto.INT64, "values the same"),
        (helper.make_node("ReduceSum", ["logits"], ["first"], keepdims=0), TensorProto.FLOAT, None),
    ],
)
def test_label_free_eval_lines_say_what_each_agreement_counts(tiny, tmp_path, head, kind, said):
    """An integer output's agreement is of equal values; one number has none, and its line says none."""
    path = _headed(tiny, tmp_path, head, kind)
    text, record = both("eval", path, "--data", tiny / "unlabelled.npz", "--steps", "4")
    first, logits = record["outputs"]
    lines = text.splitlines()
    assert lines[1].startswith("[first] " + (f"{said} {100 * first['agreement']:.2f}%, cosine " if said else "cosine "))
    assert lines[2].startswith(f"[logits] argmax agreement {100 * logits['agreement']:.2f}%, cosine ")
    assert (first["agreement"] is None) == (said is None) and len(lines) == 3


def test_label_free_eval_names_an_output_it_cannot_compare_and_goes_on(tiny, tmp_path):
    """A converted model whose first output changed shape: that output's line says why, the next
    output is still compared."""
    original = onnx.load(str(tiny / "tiny.onnx"))
    original.graph.node.append(helper.make_node("Identity", ["logits"], ["echo"]))
    original.graph.output.append(helper.make_tensor_value_info("echo", TensorProto.FLOAT, None))
    converted = onnx.ModelProto()
    converted.CopyFrom(original)
    (producer,) = [n for n in converted.graph.node if "logits" in n.output]
    producer.output[list(producer.output).index("logits")] = "inner"
    converted.graph.node[-1].input[0] = "inner"
    converted.graph.node.append(helper.make_node("Concat", ["inner", "inner"], ["logits"], axis=1))
    onnx.save(original, str(tmp_path / "original.onnx"))
    onnx.save(converted, str(tmp_path / "wide.onnx"))
    args = [
        "eval",
        tmp_path / "original.onnx",
        "--converted",
        tmp_path / "wide.onnx",
        "--data",
        tiny / "unlabelled.npz",
    ]
    text, record = both(*args)
    logits, echo = record["outputs"]
    lines = text.splitlines()
    assert logits["problem"].startswith("shapes differ: [120, ") and echo["problem"] is None
    assert lines[1] == f"[logits] {logits['problem']}"
    assert (
        lines[2] == (f"[echo] argmax agreement 100.00%, cosine {echo['cosine']:.6f}, abs error max 0 mean 0")
        and len(lines) == 3
    )


def test_label_free_eval_json_names_model_converted_and_data(tiny, tmp_path):
    record = json.loads(invoke("eval", tiny / "tiny.onnx", "--data", tiny / "unlabelled.npz", "--json"))
    assert set(record) == {"model", "converted", "data", "samples", "labels", "outputs"}
    assert record["model"] == str(tiny / "tiny.onnx") and record["converted"] == "converted in memory"
    assert record["data"] == str(tiny / "unlabelled.npz") and record["samples"] == 120
    assert set(record["outputs"][0]) == {
        "name", "shape", "agreement", "agreement_of", "argmax_axis", "cosine", "max_abs", "mean_abs", "constant",
        "detections", "problem"
    }  # fmt: skip
    assert record["outputs"][0]["agreement_of"] == "argmax" and record["outputs"][0]["argmax_axis"] == -1
    converted = tmp_path / "c.onnx"
    invoke("rewrite", tiny / "tiny.onnx", "-o", converted)
    given = json.loads(invoke("eval", tiny / "tiny.onnx", "--converted", converted, "--data",
                              tiny / "unlabelled.npz", "--json"))  # fmt: skip
    assert given["converted"] == str(converted) and given["outputs"][0]["shape"] == [120, 3]


def _two_sites_and_an_exp(folder):
    """Two Softmax sites and an Exp that is no softmax (a near miss for --explain)."""
    nodes = [
        helper.make_node("Softmax", ["x"], ["a"], name="first", axis=-1),
        helper.make_node("Softmax", ["x"], ["b"], name="second", axis=0),
        helper.make_node("Exp", ["x"], ["e"], name="lonely_exp"),  # summed and divided, but also negated
        helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
        helper.make_node("Div", ["e", "s"], ["d"]),
        helper.make_node("Neg", ["e"], ["n"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 4]) for n in ("a", "b", "d", "n")],
        [numpy_helper.from_array(np.array([-1], np.int64), "axes")],
    )
    path = folder / "sites.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    "flags, summary",
    [([], "K=12, shift, fused"), (["--no-shift", "--sigmoid", "--chain", "-k", "8"], "K=8, no shift, sigmoid, chain")],
)
def test_rewrite_report_is_the_json(tmp_path, flags, summary):
    model = _two_sites_and_an_exp(tmp_path)
    args = ["rewrite", model, "--first", "1", "--explain", "--force", *flags]
    text = invoke(*args, "-o", tmp_path / "t.onnx")
    record = json.loads(invoke(*args, "-o", tmp_path / "j.onnx", "--json"))
    ops_header, ops = parse_table(text)
    assert ops_header == ["op", "before", "after"]
    before, after = record["ops_before"], record["ops_after"]
    changed = sorted(op for op in set(before) | set(after) if before.get(op, 0) != after.get(op, 0))
    assert [row[0] for row in ops] == changed and "Exp" not in changed  # unchanged ops are left out
    for op, was, now in ops:
        assert (int(was), int(now)) == (before.get(op, 0), after.get(op, 0))
    assert ["Softmax", "2", "1"] in ops  # one of the two converted
    rest = text.splitlines()[len(ops) + 2 :]
    sites_header, sites = parse_table("\n".join(rest))
    assert sites_header == ["site", "graph", "axis", "role", "result"]
    assert [s[:4] for s in sites] == [[s["name"], s["graph"], str(s["axis"]), s["role"]] for s in record["sites"]]
    assert sites[0][4] == "converted" and sites[1][4] == f"skipped: {record['sites'][1]['reason']}"
    (miss,) = record["near_misses"]
    assert f"not a site: Exp node 'lonely_exp' in graph {miss['graph']}: {miss['reason']}" in text.splitlines()
    assert text.splitlines()[-1] == f"1 of 2 softmax sites converted ({summary}) -> {tmp_path / 't.onnx'}"


def test_explain_says_when_nothing_was_a_near_miss(tmp_path):
    from tests.helpers import softmax_model

    onnx.save(softmax_model([2, 5], -1), str(tmp_path / "m.onnx"))
    text = invoke("rewrite", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--explain")
    assert "not a site: no softmax-like pattern was left unmatched" in text.splitlines()
    quiet = invoke("rewrite", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--force")
    assert "not a site" not in quiet


def test_a_constant_output_keeps_its_value_in_json(tiny, tmp_path):
    """JSON has no NaN or inf; written as null, an output constant at NaN read as "not constant"."""
    x = np.load(tiny / "unlabelled.npz")["x"]
    np.savez(tmp_path / "flat.npz", x=np.full_like(x, np.nan))
    record = json.loads(invoke("eval", tiny / "tiny.onnx", "--data", tmp_path / "flat.npz", "--steps", "4", "--json"))
    assert record["outputs"][0]["constant"] == "nan"
    nodes = [
        helper.make_node("Softmax", ["x"], ["p"], axis=-1),
        helper.make_node("Mul", ["x", "zero"], ["z"]),
        helper.make_node("Add", ["z", "three"], ["three_out"]),
        helper.make_node("Add", ["z", "minus_inf"], ["minus_inf_out"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("zero", 0.0), ("three", 3.0), ("minus_inf", -np.inf))]  # fmt: skip
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 5]) for n in ("p", "three_out", "minus_inf_out")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])], outs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "c.onnx")
    invoke("rewrite", tmp_path / "c.onnx", "-o", tmp_path / "s.onnx")
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "c.onnx"), str(tmp_path / "s.onnx"), "--json"])
    constants = {o["name"]: o["constant"] for o in json.loads(result.output)["outputs"]}
    assert constants == {"p": None, "three_out": 3.0, "minus_inf_out": "-inf"}


def test_rewrite_report_lists_an_op_gone_from_the_graph(tmp_path):
    """A Softmax converted away (1 -> 0) is a row too: an op absent after counts as 0."""
    onnx.save(softmax_model([2, 5]), str(tmp_path / "m.onnx"))
    text = invoke("rewrite", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx")
    header, ops = parse_table(text)
    assert header == ["op", "before", "after"]
    assert ops == [["Softmax", "1", "0"], ["ai.sit::SpikingSoftmax", "0", "1"]]
