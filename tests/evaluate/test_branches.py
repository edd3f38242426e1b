"""Calibration inside If branches (branches.py): a merged decoder holds every softmax in the two
branches of one If, chosen by a `use_cache_branch` [1] input. The branch the data takes is made
main-graph nodes so its sites can be read out; that input is fed whole, not split into rows."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.branches import take_branches
from sit_onnx.evaluate.calibrate import site_logits
from sit_onnx.evaluate.datasets import batch_of, data_rows, load_labelled
from sit_onnx.evaluate.experiment import fixed_inputs, run_all
from sit_onnx.evaluate.site_params import choose_site_params
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from tests.graph.test_optimum_decoder import MERGED, _feeds
from tests.helpers import run

FLOAT = TensorProto.FLOAT


def _branch(name, scale, inner_if=None):
    """y = softmax(x * scale) (then, optionally, an If of its own on `deeper`), output named `out_<name>`."""
    nodes = [
        helper.make_node("Mul", ["x", f"s_{name}"], [f"z_{name}"]),
        helper.make_node("Softmax", [f"z_{name}"], [f"p_{name}"], axis=-1, name=f"softmax_{name}"),
    ]
    last = f"p_{name}"
    if inner_if is not None:
        nodes.append(
            helper.make_node("If", ["deeper"], [f"q_{name}"], then_branch=inner_if[0], else_branch=inner_if[1])
        )
        nodes.append(helper.make_node("Add", [last, f"q_{name}"], [f"r_{name}"]))
        last = f"r_{name}"
    nodes.append(helper.make_node("Identity", [last], [f"out_{name}"]))
    scale_tensor = numpy_helper.from_array(np.array(scale, np.float32), f"s_{name}")
    return helper.make_graph(
        nodes, name, [], [helper.make_tensor_value_info(f"out_{name}", FLOAT, None)], [scale_tensor]
    )


def _model(nested=False):
    """An If on `flag` [1] choosing a branch that scales x by 4 (then) or 0.5 (else); with `nested`,
    the then-branch holds an If on `deeper` of its own."""
    inner = (_branch("deep_then", 2.0), _branch("deep_else", 3.0)) if nested else None
    node = helper.make_node(
        "If", ["flag"], ["y"], then_branch=_branch("then", 4.0, inner), else_branch=_branch("else", 0.5)
    )
    inputs = [
        helper.make_tensor_value_info("x", FLOAT, ["n", 5]),
        helper.make_tensor_value_info("flag", TensorProto.BOOL, [1]),
    ]
    if nested:
        inputs.append(helper.make_tensor_value_info("deeper", TensorProto.BOOL, [1]))
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", FLOAT, ["n", 5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feeds_of(flag, deeper=None, rows=6):
    feeds = {"x": np.random.default_rng(0).normal(size=(rows, 5)).astype(np.float32), "flag": np.array([flag])}
    if deeper is not None:
        feeds["deeper"] = np.array([deeper])
    return feeds


@pytest.mark.parametrize("flag", [True, False])
def test_the_taken_branch_replaces_the_if_and_computes_the_same(flag):
    model, feeds = _model(), _feeds_of(flag)
    taken_model, taken = take_branches(model, feeds)
    assert taken == {"then" if flag else "else"}
    assert "If" not in [n.op_type for n in taken_model.graph.node]
    assert [n.name for n in taken_model.graph.node if n.op_type == "Softmax"] == [
        f"softmax_{'then' if flag else 'else'}"
    ]
    renamed = [n for n in taken_model.graph.node if n.name == "y/taken_branch"]
    assert [(list(n.input), list(n.output)) for n in renamed] == [([f"out_{'then' if flag else 'else'}"], ["y"])]
    np.testing.assert_allclose(run(taken_model, feeds)[0], run(model, feeds)[0], rtol=1e-6)
    assert [n.op_type for n in model.graph.node] == ["If"]  # the source is left as it was


def test_an_if_inside_a_taken_branch_is_taken_in_turn():
    model = _model(nested=True)
    for deeper, inner in ((True, "deep_then"), (False, "deep_else")):
        feeds = _feeds_of(True, deeper)
        taken_model, taken = take_branches(model, feeds)
        assert taken == {"then", inner} and "If" not in [n.op_type for n in taken_model.graph.node]
        np.testing.assert_allclose(run(taken_model, feeds)[0], run(model, feeds)[0], rtol=1e-6)
    taken_model, taken = take_branches(model, _feeds_of(False))  # the inner If is in the branch not taken
    assert taken == {"else"}


def test_ifs_the_data_does_not_fix_are_left():
    model = _model()
    for feeds in ({"x": _feeds_of(True)["x"]}, {**_feeds_of(True), "flag": np.array([True, False])}):
        taken_model, taken = take_branches(model, feeds)
        assert taken == set() and [n.op_type for n in taken_model.graph.node] == ["If"]


def test_a_condition_held_by_an_initializer_is_taken():
    model = _model()
    model.graph.input.pop()  # flag becomes a weight
    model.graph.initializer.append(numpy_helper.from_array(np.array([False]), "flag"))
    taken_model, taken = take_branches(model, {"x": _feeds_of(True)["x"]})
    assert taken == {"else"}
    assert [n.name for n in taken_model.graph.node if n.op_type == "Softmax"] == ["softmax_else"]


def test_site_logits_reach_the_taken_branch_only():
    model, feeds = _model(), _feeds_of(True)
    found = site_logits(model, feeds)
    assert [(site.name, site.graph) for site, _ in found] == [("softmax_then", "then")]
    np.testing.assert_allclose(found[0][1], feeds["x"] * 4.0, rtol=1e-6)


def test_an_input_of_fixed_shape_is_fed_whole_and_others_still_need_every_row(tmp_path):
    model = _model()
    assert fixed_inputs(model) == {"flag": 1}
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((6, 5), np.float32), flag=np.array([True]))
    data = load_labelled(path, None, "x", require_labels=False, whole=fixed_inputs(model))
    assert data.arrays["flag"].shape == (1,) and data_rows(data.arrays) == 6
    with pytest.raises(SitOnnxError, match=r"'flag' has 1 rows but the first array has 6"):
        load_labelled(path, None, "x", require_labels=False)  # not declared fixed: rows as ever
    np.savez(path, flag=np.array([True]), x=np.zeros((6, 5), np.float32))  # the fed-whole array first
    assert data_rows(load_labelled(path, None, "x", require_labels=False, whole={"flag": 1}).arrays) == 6
    np.savez(path, x=np.zeros((6, 5), np.float32), flag=np.array([True, False]))
    with pytest.raises(SitOnnxError, match=r"'flag' has 2 rows but the first array has 6"):
        load_labelled(path, None, "x", require_labels=False, whole={"flag": 1})


def test_batches_keep_the_fed_whole_input_as_it_is():
    feeds = _feeds_of(True, rows=5)
    parts = [batch_of(feeds, {"x"}, start, 2) for start in (0, 2, 4)]
    assert [p["x"].shape[0] for p in parts] == [2, 2, 1] and all(p["flag"].shape == (1,) for p in parts)
    assert batch_of({"x": feeds["x"][:1], "flag": feeds["flag"]}, {"x"}, 0, 2)["flag"].shape == (1,)
    import onnxruntime as ort

    session = ort.InferenceSession(_model().SerializeToString(), providers=["CPUExecutionProvider"])
    got = run_all(session, feeds, "data", batch=2)["y"]
    np.testing.assert_allclose(got, run(_model(), feeds)[0], rtol=1e-6)


def _merged_decoder_data(path, rows=6):
    feeds = _feeds(onnx.load(str(MERGED)), use_cache=False)
    feeds = {k: np.repeat(v[:1], rows, axis=0) if k != "use_cache_branch" else v for k, v in feeds.items()}
    feeds["input_ids"] = np.random.default_rng(1).integers(0, 32, feeds["input_ids"].shape).astype(np.int64)
    feeds.update({k: v[:, :, :0] for k, v in feeds.items() if k.startswith("past_key_values") and ".decoder." in k})
    np.savez(path, **feeds)
    return feeds


def test_rewrite_calibrates_a_merged_decoders_sites_and_both_branches_take_the_sets(tmp_path):
    """The optimum T5 decoder's four sites, two per branch with the same names: the first-step data
    reaches the no_past branch; the cached branch's sites of those names take the same sets."""
    data, out = tmp_path / "d.npz", tmp_path / "t5.sit.onnx"
    feeds = _merged_decoder_data(data)
    result = CliRunner().invoke(main, ["rewrite", str(MERGED), "-o", str(out), "--calibrate", str(data), "--json"])
    assert result.exit_code == 0, result.output
    choices = {c["name"]: c for c in json.loads(result.stdout)["calibration"]}
    assert sorted(choices) == [
        "/decoder/block.0/layer.0/SelfAttention/Softmax",
        "/decoder/block.0/layer.1/EncDecAttention/Softmax",
    ]
    rows = 6 * 4 * feeds["input_ids"].shape[1]  # samples x heads x queries; half are held out for the choice
    assert {c["rows"] for c in choices.values()} == {rows // 2}
    model = onnx.load(str(out))
    for branch in (a.g for a in model.graph.node[0].attribute):
        assert len([n for n in branch.node if n.op_type == "SpikingSoftmax"]) == 2
    for use_cache in (False, True):
        assert all(np.isfinite(v).all() for v in run(model, _feeds(model, use_cache)))


def test_calibration_sets_of_a_taken_branch_match_a_direct_calibration():
    source = onnx.load(str(MERGED))
    feeds = _feeds(source, use_cache=False)
    feeds.update({k: v[:, :, :0] for k, v in feeds.items() if k.startswith("past_key_values") and ".decoder." in k})
    choices = choose_site_params(source, feeds, steps=8, rounds=0)
    taken_model, _ = take_branches(source, feeds)
    direct = choose_site_params(taken_model, feeds, steps=8, rounds=0)
    assert [(c.name, c.chosen, c.rows) for c in choices] == [(c.name, c.chosen, c.rows) for c in direct]
    new, report = rewrite_model(source, RewriteOptions(steps=8), site_params={c.name: c.params for c in choices})
    assert "4 of 4 converted sites carry their own calibrated parameter set" in report.notes


def test_bad_calibration_data_is_one_line_not_an_internal_error(tmp_path):
    data, out = tmp_path / "d.npz", tmp_path / "t5.sit.onnx"
    feeds = _merged_decoder_data(data)
    feeds["input_ids"] = feeds["input_ids"] + 100  # past the embedding table
    np.savez(data, **feeds)
    result = CliRunner().invoke(main, ["rewrite", str(MERGED), "-o", str(out), "--calibrate", str(data)])
    assert result.exit_code == 1 and not out.exists()
    said = result.stderr.strip()
    assert said.startswith("Error: model: onnxruntime failed to run the model: ") and "\n" not in said, said


@pytest.mark.parametrize("labelled", [True, False])
def test_eval_feeds_the_fixed_input_whole_with_every_batch(tmp_path, labelled):
    """600 rows run in batches (256 for accuracy): `flag` [1] goes whole with each, labelled or not."""
    model_path, data = tmp_path / "m.onnx", tmp_path / "d.npz"
    onnx.save(_model(), str(model_path))
    feeds = _feeds_of(True, rows=600)
    labels = np.argmax(run(_model(), feeds)[0], axis=1)
    np.savez(data, **feeds, **({"labels": labels} if labelled else {}))
    result = CliRunner().invoke(main, ["eval", str(model_path), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    if labelled:
        assert record["samples"] == 600 and record["ann_accuracy"] == 1.0
    else:
        assert record["samples"] == 600 and record["outputs"][0]["shape"] == [600, 5]


def test_a_fixed_input_first_does_not_stop_the_row_check_of_the_rest(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, flag=np.array([True]), x=np.zeros((6, 5), np.float32), z=np.zeros((5, 5), np.float32))
    with pytest.raises(SitOnnxError, match=r"'z' has 5 rows but the first array has 6"):
        load_labelled(path, None, "x", require_labels=False, whole={"flag": 1})


def test_an_if_in_the_ai_onnx_spelling_of_the_default_domain_is_taken():
    model = _model()
    model.graph.node[0].domain = "ai.onnx"
    taken_model, taken = take_branches(model, _feeds_of(True))
    assert taken == {"then"} and "If" not in [n.op_type for n in taken_model.graph.node]


@pytest.mark.parametrize("labelled", [True, False])
def test_eval_names_the_data_a_model_cannot_run_on(tmp_path, labelled):
    data = tmp_path / "d.npz"
    feeds = _merged_decoder_data(data)
    feeds["input_ids"] = feeds["input_ids"] + 100  # past the embedding table
    np.savez(data, **feeds, **({"labels": np.zeros(6, np.int64)} if labelled else {}))
    result = CliRunner().invoke(main, ["eval", str(MERGED), "--data", str(data)])
    said = result.stderr.strip()
    assert result.exit_code == 1 and said.startswith(f"Error: {data}: onnxruntime failed to run the model: "), said


def test_a_model_without_an_if_to_take_is_returned_as_it_is():
    model = _model()
    assert take_branches(model, {"x": _feeds_of(True)["x"]})[0] is model
    assert take_branches(model, _feeds_of(True))[0] is not model


def _eval_file(tmp_path, x=np.zeros((6, 5), np.float32), flag=True):
    """d.npz with x, six labels and (with `flag`) the fixed [1] `flag` input of _model()."""
    path = tmp_path / "d.npz"
    np.savez(path, x=x, labels=np.zeros(6, np.int64), **({"flag": np.array([True])} if flag else {}))
    return path


def test_labelled_and_unlabelled_data_both_feed_a_fixed_input_whole(tmp_path):
    """`eval` with labels and without read the model's fixed inputs alike."""
    from sit_onnx.evaluate.experiment import input_data, labelled_data

    path = _eval_file(tmp_path)
    for data in (labelled_data(_model(), path, None), input_data(_model(), path, None)):
        assert data.arrays["flag"].shape == (1,) and data.source == str(path)


def test_a_refusal_during_eval_names_the_data(tmp_path):
    from sit_onnx.evaluate.experiment import ModelPair, evaluate_accuracy, evaluate_outputs, labelled_data
    from sit_onnx.runtime import SessionSpec

    path = _eval_file(tmp_path, np.zeros((6, 3), np.float32))
    pair = ModelPair(_model(), _model(), None)
    data = labelled_data(_model(), path, None)
    spec = SessionSpec(use_library=False)
    for evaluate in (evaluate_accuracy, evaluate_outputs):
        with pytest.raises(SitOnnxError, match=f"^{path}: 'x' has shape \\[6, 3\\], the model wants"):
            evaluate(pair, data, spec)


def test_a_run_time_refusal_during_eval_names_the_data(tmp_path):
    """Data the declared shapes accept but the graph cannot take (24 values into rows of 5)."""
    from sit_onnx.evaluate.experiment import ModelPair, evaluate_accuracy, evaluate_outputs, labelled_data
    from sit_onnx.runtime import SessionSpec

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "rows_of_5"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", FLOAT, [None, 5])],
        [numpy_helper.from_array(np.array([-1, 5], np.int64), "rows_of_5")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = _eval_file(tmp_path, np.zeros((6, 4), np.float32), flag=False)
    data = labelled_data(model, path, None)
    fine = onnx.ModelProto.FromString(model.SerializeToString())
    fine.graph.node[0].op_type = "Identity"
    del fine.graph.node[0].input[1:]
    fine.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 4
    for evaluate in (evaluate_accuracy, evaluate_outputs):
        for original in (model, fine):  # the original refuses, or the converted one does
            with pytest.raises(SitOnnxError, match=f"^{path}: onnxruntime failed to run the model: "):
                evaluate(ModelPair(original, model, None), data, SessionSpec(use_library=False))


def test_eval_uses_the_given_session_spec_and_runs_an_original_alone(tmp_path):
    from sit_onnx.evaluate.experiment import ModelPair, evaluate_accuracy, evaluate_outputs, labelled_data
    from sit_onnx.runtime import SessionSpec

    data = labelled_data(_model(), _eval_file(tmp_path), None)
    pair = ModelPair(_model(), _model(), None)
    for evaluate in (evaluate_accuracy, evaluate_outputs):
        with pytest.raises(SitOnnxError, match="unknown provider 'tpu'"):
            evaluate(pair, data, SessionSpec(provider="tpu"))
    with pytest.raises(SitOnnxError, match="unknown provider 'tpu'"):
        evaluate_accuracy(ModelPair(_model(), None, None), data, SessionSpec(provider="tpu"))
    alone = evaluate_accuracy(ModelPair(_model(), None, None), data, SessionSpec(use_library=False))
    assert alone.converted_accuracy is None and alone.ann_accuracy == 1.0  # all-zero rows: argmax 0, the label
