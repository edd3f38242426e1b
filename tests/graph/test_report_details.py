"""Details a converted model and its report carry, and the wording of refusals a user meets."""

import numpy as np
import onnx
import pytest

from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import NeuronParams, shipped_params, si_exp
from sit_onnx.neurons.fit import MAX_FIT_WIDTH, check_fit_range
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.helpers import softmax_model


def test_converted_model_records_its_set_and_k():
    new, _ = rewrite_model(softmax_model([2, 5], -1), RewriteOptions(steps=8))
    props = {p.key: p.value for p in new.metadata_props}
    assert props["sit_onnx.steps"] == "8" and props["sit_onnx.params"] == shipped_params(8, SHIFT_RANGE).method


def test_refusals_name_the_model_or_say_model():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(SitOnnxError, match=r"^model: no Softmax \(nor Exp→ReduceSum→Div softmax\) to convert$"):
        rewrite_model(plain)
    with pytest.raises(SitOnnxError, match=r"^m\.onnx: no Softmax"):
        rewrite_model(plain, source="m.onnx")
    with pytest.raises(SitOnnxError) as raised:
        rewrite_model(softmax_model([2, 5], -1, name="att"), RewriteOptions(nodes=("a", "b")))
    assert str(raised.value) == "--nodes: no softmax site named a, b; sites are: att"
    from tests.graph.test_activation_rewrite import FORMS, _model

    gelu_only = _model(*FORMS["Erf form (torch)"][0]())  # activations to convert, no softmax
    with pytest.raises(SitOnnxError) as raised:
        rewrite_model(gelu_only, RewriteOptions(nodes=("a",), activations=("gelu",)))
    assert str(raised.value) == "--nodes: no softmax site named a; the model has no softmax site"


def test_fit_range_width_limit_is_inclusive():
    assert check_fit_range((-MAX_FIT_WIDTH, 0.0)) == (-MAX_FIT_WIDTH, 0.0)
    with pytest.raises(SitOnnxError, match=r"wider than 100; fit a narrower range$"):
        check_fit_range((-MAX_FIT_WIDTH - 0.5, 0.0))
    with pytest.raises(SitOnnxError, match=r"^--range: need finite LO < HI, got 1 -1$"):
        check_fit_range((1, -1))


def test_params_take_any_sequence_range_and_spikes_are_booleans():
    params = NeuronParams([0.0, -1.0], [1.0, 1.0], [0.5, 0.25], [-2, 0])
    assert params.input_range == (-2.0, 0.0) and all(type(v) is float for v in params.input_range)
    out, spikes = si_exp(np.array([0.5, -0.5, -1.5]), params, return_spikes=True)
    assert spikes.dtype == bool and spikes.tolist() == [[True, True], [False, True], [False, False]]
    np.testing.assert_allclose(out, [0.75, 0.25, 0.0])  # 0.5 fires, resets to -0.5, fires again


def test_missing_library_says_how_to_get_it(monkeypatch):
    import sit_onnx.runtime.library as library

    monkeypatch.delenv(library.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(library, "_installed_library", lambda: None)
    with pytest.raises(SitOnnxError, match=r"reinstall with SIT_ONNX_OPS=ON .*, or set SIT_ONNX_OPS_LIBRARY$"):
        library.get_library_path()
    assert library.library_available() is False


def test_inserted_names_are_fresh_numbered_from_one_and_unnamed_sites_are_called_by_their_output():
    import onnx_graphsurgeon as gs

    from sit_onnx.graph.rewrite_softmax import NamePool

    graph = gs.import_onnx(softmax_model([2, 5], -1, name="att"))
    names = NamePool(graph)
    assert names.fresh("att") == "att_1" and names.fresh("att") == "att_2" and names.fresh("new") == "new"
    assert names.fresh("x") == "x_1"  # graph inputs are taken too
    unnamed = softmax_model([2, 5], -1, name="")
    new, _ = rewrite_model(unnamed)
    assert [n.name for n in new.graph.node] == ["softmax@y/sit_SpikingSoftmax"]


@pytest.mark.parametrize("opset, semantics", [
    (11, "opset 11: input coerced to 2-D at axis 1, normalised over all trailing dims"),
    (12, "opset 12: input coerced to 2-D at axis 1, normalised over all trailing dims"),
    (13, "softmax over axis 1"),
])  # fmt: skip
def test_each_site_says_what_its_softmax_normalises(opset, semantics):
    _, report = rewrite_model(softmax_model([2, 3, 4], 1, opset=opset))
    assert report.sites[0].semantics == semantics


@pytest.mark.parametrize("name", ["sm", ""])  # an unnamed one is named after its output, its axis still found
@pytest.mark.parametrize("axis, said", [(2, 2), (-1, -1), (None, 1)])  # opset < 13's default axis is 1
def test_an_old_softmax_reports_the_axis_it_was_written_with(axis, said, name):
    _, report = rewrite_model(softmax_model([2, 3, 4], axis, opset=11, name=name))
    assert (
        report.sites[0].semantics == f"opset 11: input coerced to 2-D at axis {said}, normalised over all trailing dims"
    )


def test_notes_for_a_set_fitted_off_the_max_shift_range_and_for_ensembles(tmp_path):
    paper = tmp_path / "paper.json"
    shipped_params(8, (-1, 1)).save(paper)
    _, report = rewrite_model(softmax_model([2, 5], -1), RewriteOptions(params_file=str(paper)))
    assert (
        "max-shift feeds SI-exp values <= 0, but this parameter set is fitted on [-1.0, 1.0]; "
        "a set fitted on [-R, 0] fits better"
    ) in report.notes
    _, default = rewrite_model(softmax_model([2, 5], -1))
    assert default.notes == []  # the shipped max-shift set, fused: nothing to say
    half = tmp_path / "half.json"
    NeuronParams([0.0, -1.0], [1.0, 1.0], [0.5, 0.25], (-2, 0.5)).save(half)
    _, edge = rewrite_model(softmax_model([2, 5], -1), RewriteOptions(params_file=str(half), steps=2))
    assert not any("max-shift feeds" in n for n in edge.notes)  # up to 0.5 above 0 is fine
    from sit_onnx.neurons.fit import fit_ensemble

    ensemble = tmp_path / "ensemble.json"
    fit_ensemble(shipped_params(4, SHIFT_RANGE), 2).save(ensemble)
    _, chained = rewrite_model(softmax_model([2, 5], -1), RewriteOptions(params_file=str(ensemble), steps=4))
    assert "an ensemble of 2 neurons cannot fuse: written as the explicit chain" in chained.notes
    assert chained.options["fuse"] is False


def _two_softmaxes():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["p"], axis=-1, name="first"),
            helper.make_node("Softmax", ["p"], ["y"], axis=-1, name="second"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("fuse", [True, False])
def test_the_rest_of_a_partly_converted_model_takes_its_k(fuse):
    """`--first 1` at K=8, then the rest: another K is refused (one model, one set of functions),
    the same K converts the other site; without the metadata older conversions wrote none of, K
    is counted from the SpikingExp function's steps."""
    half, _ = rewrite_model(_two_softmaxes(), RewriteOptions(steps=8, first=1, fuse=fuse))
    refusal = "model: already holds SpikingExp with K=8; convert the rest with --steps 8"
    with pytest.raises(SitOnnxError, match=f"^{refusal}$"):
        rewrite_model(half, RewriteOptions(steps=12))
    whole, report = rewrite_model(half, RewriteOptions(steps=8, fuse=fuse))
    assert [(s.name, s.converted) for s in report.sites] == [("second", True)]
    del half.metadata_props[:]
    with pytest.raises(SitOnnxError, match=f"^{refusal}$"):
        rewrite_model(half, RewriteOptions(steps=12))
    rewrite_model(half, RewriteOptions(steps=8, fuse=fuse))


def test_steps_are_read_from_digits_only_and_from_our_own_functions():
    from onnx import helper

    from sit_onnx.domain import DOMAIN, SPIKING_EXP
    from sit_onnx.graph.convert import _existing_steps

    model = _two_softmaxes()
    assert _existing_steps(model) is None
    helper.set_model_props(model, {"sit_onnx.steps": "x8", "other.steps": "6"})
    assert _existing_steps(model) is None  # neither a number nor our key
    body = [helper.make_node("GreaterOrEqual", ["a", "b"], [f"z{k}"]) for k in range(5)]
    body.append(helper.make_node("Identity", ["a"], ["y"]))
    for domain, name in [("vendor", SPIKING_EXP), (DOMAIN, "SpikingNorm")]:
        model.functions.append(helper.make_function(domain, name, ["a", "b"], ["y"], body, []))
    assert _existing_steps(model) is None
    model.functions.append(helper.make_function(DOMAIN, SPIKING_EXP, ["a", "b"], ["y"], body, []))
    assert _existing_steps(model) == 5
    helper.set_model_props(model, {"sit_onnx.steps": "9"})
    assert _existing_steps(model) == 9  # the metadata first


def test_unnamed_sites_name_the_chains_nodes_by_their_output_too():
    new, _ = rewrite_model(softmax_model([2, 5], -1, name=""), RewriteOptions(fuse=False, sigmoid=True))
    names = [n.name for n in new.graph.node]
    assert names and all(name.startswith("softmax@y/sit_") for name in names), names


@pytest.mark.parametrize("opset, casts", [(14, True), (15, False), (17, False)])
def test_float16_casts_around_the_spiking_ops_only_below_castlike(opset, casts):
    """From opset 15 the function bodies widen float16 themselves (CastLike): no Cast in the graph."""
    from onnx import TensorProto

    new, _ = rewrite_model(softmax_model([2, 5], -1, opset=opset, dtype=TensorProto.FLOAT16))
    assert ("Cast" in [n.op_type for n in new.graph.node]) == casts


@pytest.mark.parametrize(
    "axis, shape, portable",
    [(-1, [4], 0), (-2, [3, 4], 0), (-1, [3, 4], 1), (-3, [3, 4], -3), (1, [3, 4], 1), (-1, None, -1), (-1, [], -1)],
)
def test_portable_axis_is_non_negative_where_the_rank_allows(axis, shape, portable):
    """-rank is the first axis (0); an axis beyond the rank, or an unknown rank, is left as it is."""
    from types import SimpleNamespace

    from sit_onnx.graph.rewrite_softmax import portable_axis

    site = SimpleNamespace(axis=axis, logits=SimpleNamespace(shape=shape))
    assert portable_axis(site) == portable


def test_ops_are_counted_in_subgraphs_with_the_default_domain_spelled_either_way():
    from onnx import TensorProto, helper

    from sit_onnx.graph.report import count_ops

    value = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    branch = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], domain="ai.onnx")], "b", [], [value])
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["s"]),
            helper.make_node("BiasSoftmax", ["x", "x"], ["t"], domain="com.microsoft"),
            helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
        ],
        "g",
        [],
        [value],
    )
    assert count_ops(graph) == {"Softmax": 3, "com.microsoft::BiasSoftmax": 1, "If": 1}


@pytest.mark.parametrize(
    "options, said",
    [
        (
            RewriteOptions(params_file="set.json", objective="softmax"),
            "--objective picks a shipped set; it has no meaning with --params",
        ),
        (
            RewriteOptions(objective="softmax", shift=False),
            "--objective softmax sets are fitted to rows of max-shifted logits: they need --shift "
            "(--no-shift takes the paper's exp-rmse sets on [-1, 1])",
        ),
    ],
    ids=["objective with params", "softmax objective without shift"],
)
def test_options_that_cannot_go_together_are_refused_whole(options, said):
    with pytest.raises(SitOnnxError) as error:
        rewrite_model(softmax_model([2, 5], -1), options)
    assert str(error.value) == said


def test_a_site_left_out_of_nodes_says_so():
    model = softmax_model([2, 5], -1)
    model.graph.node[0].name = "kept"
    model.graph.node.append(onnx.helper.make_node("Softmax", [model.graph.output[0].name], ["again"], name="other"))
    model.graph.output[0].name = "again"
    _, report = rewrite_model(model, RewriteOptions(nodes=("kept",)))
    assert [(s.name, s.converted, s.reason) for s in report.sites] == [
        ("kept", True, None),
        ("other", False, "not named in --nodes"),
    ]


def test_the_chains_constants_are_named_after_their_site_too(tmp_path):
    """The shift's axes (an input from opset 18) and an ensemble's offsets are named after the site,
    like its nodes, so two sites' constants never look alike."""
    params = shipped_params(4, SHIFT_RANGE)
    pair = NeuronParams(params.thresholds, params.resets, params.weights * 2, params.input_range, offsets=(0, 1))
    pair.save(tmp_path / "pair.json")
    options = RewriteOptions(fuse=False, params_file=tmp_path / "pair.json")
    new, _ = rewrite_model(softmax_model([2, 5], -1, opset=18), options)
    assert sorted(i.name for i in new.graph.initializer) == ["sm/offset0", "sm/offset1", "sm/shift_axes"]
