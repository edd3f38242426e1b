"""A fused attention op whose output carries a stale shape annotation, as onnxscript's ORT fusions
leave on GPT-2 ([16*b, 64] of a [b, 16, 64] tensor). onnxruntime ignores the annotation (with a
warning) and runs the source; once the op is expanded, onnx's checker refused the rewrite for it.
The annotation is now dropped, saying so; where the source is broken without it as well (a Gemm
reads the tensor as rank 2: onnxruntime refuses that source too), the refusal says the source is
inconsistent and why, in one line."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.validate import _contradicts, drop_contradicted_annotations
from tests.helpers import run

SEQ, HIDDEN = 6, 16


def _fused_model(reader="MatMul", annotation=("6*b", HIDDEN)):
    """q [b, 6, 16] -> com.microsoft MultiHeadAttention (2 heads) -> `reader` -> y, the attention's
    output annotated as `annotation`; a second, true annotation on y's way must survive."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((HIDDEN, 8)).astype(np.float32), "w")
    reader_node = (
        helper.make_node("MatMul", ["att", "w"], ["mixed"])
        if reader == "MatMul"
        else helper.make_node("Gemm", ["att", "w"], ["mixed"])
    )
    nodes = [
        helper.make_node("MultiHeadAttention", ["q", "q", "q"], ["att"], domain="com.microsoft", num_heads=2),
        reader_node,
        helper.make_node("Relu", ["mixed"], ["y"]),
    ]
    out_shape = ["b", SEQ, 8] if reader == "MatMul" else ["6*b", 8]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["b", SEQ, HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [w],
        value_info=[
            helper.make_tensor_value_info("att", TensorProto.FLOAT, list(annotation)),
            helper.make_tensor_value_info("mixed", TensorProto.FLOAT, out_shape),
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _annotations(model) -> dict[str, list]:
    return {
        info.name: [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in model.graph.value_info
    }


def test_a_stale_rank_is_dropped_and_the_rewrite_keeps_the_sources_output():
    source = _fused_model()
    feeds = {"q": np.random.default_rng(1).standard_normal((2, SEQ, HIDDEN)).astype(np.float32)}
    expected = run(source, feeds)[0]  # onnxruntime runs the source, its annotation notwithstanding
    new, report = rewrite_model(source, RewriteOptions())
    assert [s.converted for s in report.sites] == [True]
    dropped = [n for n in report.notes if n.startswith("dropped")]
    assert dropped == [
        "dropped the source's shape annotation of 'att' [6*b, 16] (inferred [b, 6, 16]): it contradicts what the "
        "source's own ops compute (onnxruntime ignores it in the source, with a warning; the standard ops that "
        "take an attention op's or a softmax's place would be shaped by it)"
    ]
    annotations = _annotations(new)
    assert "att" not in annotations and annotations["mixed"] == ["b", SEQ, 8]  # the true one stays
    got = run(new, feeds)[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_a_stale_fixed_dim_is_dropped():
    new, report = rewrite_model(_fused_model(annotation=("b", SEQ, 99)), RewriteOptions())
    assert "att" not in _annotations(new)
    assert any(
        n.startswith("dropped the source's shape annotation of 'att' [b, 6, 99] (inferred [") for n in report.notes
    )


def test_an_annotation_inference_confirms_is_kept_and_nothing_is_said():
    new, report = rewrite_model(_fused_model(annotation=("b", "s", HIDDEN)), RewriteOptions())
    assert _annotations(new)["att"] == ["b", "s", HIDDEN]
    assert not any("dropped" in n for n in report.notes)


def test_an_annotation_inference_cannot_confirm_goes_without_a_word():
    """[b, 6, 16] where the input says [b, s, 16]: the 6 may hold for the export's data, but nothing
    proves it, and a fixed dim is what onnxruntime folds the expansion's shapes by."""
    source = _fused_model(annotation=("b", SEQ, HIDDEN))
    source.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "s"
    new, report = rewrite_model(source, RewriteOptions())
    assert "att" not in _annotations(new) and "mixed" not in _annotations(new)  # [b, 6, 8]: nor is this 6
    assert not any("dropped" in n for n in report.notes)
    assert report.unproven_annotations == ["'att' [b, 6, 16]", "'mixed' [b, 6, 8]"]  # what --explain lists


def test_explain_lists_the_annotations_dropped_without_a_note(tmp_path):
    source = _fused_model(annotation=("b", SEQ, HIDDEN))
    source.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "s"
    path = tmp_path / "m.onnx"
    onnx.save(source, str(path))
    explained = CliRunner().invoke(main, ["rewrite", str(path), "-o", str(tmp_path / "o.onnx"), "--explain"])
    assert explained.exit_code == 0, explained.output
    listed = [line for line in explained.output.splitlines() if line.startswith("dropped annotation: ")]
    assert listed == [
        "dropped annotation: 'att' [b, 6, 16]: no inference confirms its fixed dims",
        "dropped annotation: 'mixed' [b, 6, 8]: no inference confirms its fixed dims",
    ]
    quiet = CliRunner().invoke(main, ["rewrite", str(path), "-o", str(tmp_path / "q.onnx")])
    assert "dropped annotation" not in quiet.output
    proven = rewrite_model(_fused_model(annotation=("b", SEQ, HIDDEN)), RewriteOptions())[1]
    assert proven.unproven_annotations == []  # [b, 6, 16] of a [b, 6, 16] input: nothing to list


def test_an_annotation_onnxruntimes_inference_proves_stays():
    """[b, 6, 16] of a [b, 6, 16] input: onnx's inference loses the 6 in the expansion's reshapes,
    onnxruntime's symbolic inference follows them and proves it."""
    new, report = rewrite_model(_fused_model(annotation=("b", SEQ, HIDDEN)), RewriteOptions())
    assert _annotations(new)["att"] == ["b", SEQ, HIDDEN]
    assert not any("dropped" in n for n in report.notes)


def _identity_into_attention(annotated, maker=("Identity", ""), **attributes):
    """q -> `maker` (an Identity) -> qi (annotated `annotated`) -> MultiHeadAttention -> MatMul -> y."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((HIDDEN, 8)).astype(np.float32), "w")
    nodes = [
        helper.make_node(maker[0], ["q"], ["qi"], domain=maker[1]),
        helper.make_node(
            "MultiHeadAttention", ["qi", "qi", "qi"], ["att"], domain="com.microsoft", num_heads=2, **attributes
        ),
        helper.make_node("MatMul", ["att", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["b", "s", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 8])],
        [w],
        value_info=[helper.make_tensor_value_info("qi", TensorProto.FLOAT, annotated)],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )


def test_a_stale_fixed_batch_on_an_attention_input_no_longer_breaks_the_run():
    """An export's fixed batch (2) left on the attention's input after the model was made dynamic:
    onnxruntime runs the source at batch 3 (the fused op never looks); the expanded op's standard
    ops let onnxruntime fold the softmax's shapes by the 2, and the converted model failed at run
    time ("Non concat axis dimensions must match: ... 2 and 3"). The annotation is dropped."""
    source = _identity_into_attention([2, SEQ, HIDDEN])
    feeds = {"q": np.random.default_rng(1).standard_normal((3, SEQ, HIDDEN)).astype(np.float32)}
    expected = run(source, feeds)[0]
    new, report = rewrite_model(source, RewriteOptions())
    assert "qi" not in _annotations(new) and not any("dropped" in n for n in report.notes)
    got = run(new, feeds)[0]
    assert got.shape == expected.shape == (3, SEQ, 8)
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_an_annotation_inference_cannot_reach_goes_too():
    """The attention's input made by an op onnx does not know (onnxruntime's FastGelu, as its
    optimiser writes them): inference types nothing there, so the stale batch is not confirmed."""
    source = _identity_into_attention([2, SEQ, HIDDEN], maker=("FastGelu", "com.microsoft"))
    feeds = {"q": np.random.default_rng(1).standard_normal((3, SEQ, HIDDEN)).astype(np.float32)}
    expected = run(source, feeds)[0]
    new, report = rewrite_model(source, RewriteOptions())
    assert "qi" not in _annotations(new)
    got = run(new, feeds)[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_a_stale_graph_output_after_the_attention_takes_the_inferred_shape():
    """Not the attention's own output: the model's, two ops on, declared [6*b, 8]. Behind the fused
    op onnx could not check it; once expanded, the checker refused it."""
    source = _fused_model(annotation=("b", "s", HIDDEN))
    source.graph.output[0].type.tensor_type.shape.CopyFrom(
        helper.make_tensor_type_proto(1, ["6*b", 8]).tensor_type.shape
    )
    del source.graph.value_info[1:]  # 'mixed' unannotated
    new, report = rewrite_model(source, RewriteOptions())
    assert any(n.startswith("dropped the source's shape annotation of output 'y' [6*b, 8] (") for n in report.notes)
    assert len(new.graph.output[0].type.tensor_type.shape.dim) == 3


@pytest.mark.parametrize(("annotated", "kept"), [(["b", "s", HIDDEN], True), ([2, "s", HIDDEN], False)])
def test_around_an_attention_op_left_alone_a_proven_annotation_stays_and_a_stale_one_goes(annotated, kept):
    """Not expanded (an attribute sit-onnx does not know), the op still feeds a Softmax the rewrite
    converts, whose function body onnxruntime shapes by what it infers upstream: the true annotation
    stays, the batch of 2 the input does not prove goes."""
    source = _identity_into_attention(annotated, future_flag=1)
    source.graph.node.append(helper.make_node("Softmax", ["y"], ["p"]))
    source.graph.output[0].name = "p"
    new, report = rewrite_model(source, RewriteOptions())
    assert [a["expanded"] for a in report.attention] == [False]
    assert (_annotations(new).get("qi") == annotated) is kept


def test_a_source_broken_without_its_annotation_is_refused_naming_both(tmp_path):
    source = _fused_model(reader="Gemm")
    with pytest.raises(SitOnnxError) as raised:
        rewrite_model(source, RewriteOptions())
    message = str(raised.value)
    assert message.startswith(
        "the source is inconsistent: its shape annotation of 'att' [6*b, 16] (inferred [b, 6, 16]) contradicts "
        "what its own ops compute, and without it onnx's checker says: "
    )
    assert "Gemm" in message and "rank 3" in message
    path, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(source, str(path))
    result = CliRunner().invoke(main, ["rewrite", str(path), "-o", str(out)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.startswith("Error: the source is inconsistent: ") and result.output.count("\n") == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def _tensor_type(elem, dims):
    return helper.make_tensor_type_proto(elem, dims)


@pytest.mark.parametrize(
    ("declared", "inferred", "contradicts"),
    [
        (["b", 6], ["b", 6], False),
        (["b", 6], [2, 6], False),  # a named dim against a fixed one: both can hold
        (["b", 6], [None, 6], False),  # an unknown dim
        ([3, 6], [2, 6], True),
        (["b", 6], ["b", 6, 1], True),
        ([], [1], True),  # a scalar is rank 0
    ],
)
def test_which_types_contradict(declared, inferred, contradicts):
    float_ = TensorProto.FLOAT
    assert _contradicts(_tensor_type(float_, declared), _tensor_type(float_, inferred)) is contradicts


def test_unknown_ranks_and_element_types_contradict_nothing():
    no_rank = _tensor_type(TensorProto.FLOAT, None)
    assert not no_rank.tensor_type.HasField("shape")
    assert not _contradicts(no_rank, _tensor_type(TensorProto.FLOAT, [2, 3]))
    assert not _contradicts(_tensor_type(TensorProto.FLOAT, [2, 3]), no_rank)
    assert not _contradicts(_tensor_type(0, [2, 3]), _tensor_type(TensorProto.FLOAT, [2, 3]))
    assert _contradicts(_tensor_type(TensorProto.FLOAT16, [2, 3]), _tensor_type(TensorProto.FLOAT, [2, 3]))
    sequence = helper.make_sequence_type_proto(_tensor_type(TensorProto.FLOAT, [2]))
    assert not _contradicts(sequence, _tensor_type(TensorProto.FLOAT, [3]))


def test_subgraph_annotations_are_checked_where_they_sit():
    """An If branch's stale annotation goes; the same name's true one in the other branch stays."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])

    def branch(name, annotated):
        node = helper.make_node("Relu", ["x"], [f"{name}_r"])
        ident = helper.make_node("Identity", [f"{name}_r"], [f"{name}_out"])
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [2, 3])
        info = helper.make_tensor_value_info(f"{name}_r", TensorProto.FLOAT, annotated)
        return helper.make_graph([node, ident], name, [], [out], value_info=[info])

    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node(
        "If", ["c"], ["y"], then_branch=branch("then", [2, 3]), else_branch=branch("else", [2, 3, 1])
    )
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = helper.make_model(
        helper.make_graph([node], "g", [x, cond], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    assert drop_contradicted_annotations(model) == ["'else_r' [2, 3, 1] (inferred [2, 3])"]
    branches = {a.name: a.g for a in model.graph.node[0].attribute}
    then_branch, else_branch = branches["then_branch"], branches["else_branch"]
    assert [i.name for i in then_branch.value_info] == ["then_r"] and not else_branch.value_info


def test_a_graph_outputs_stale_shape_is_replaced_by_the_inferred_one():
    """The fused op's output is the model's output, declared [6*b, 16]: the declaration keeps its
    element type and takes the inferred rank (the checker wants a shape on a graph output)."""
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["b", SEQ, HIDDEN])
    declared = helper.make_tensor_value_info("att", TensorProto.FLOAT, ["6*b", HIDDEN])
    node = helper.make_node("MultiHeadAttention", ["q", "q", "q"], ["att"], domain="com.microsoft", num_heads=2)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    source = helper.make_model(helper.make_graph([node], "g", [q], [declared]), opset_imports=opsets)
    feeds = {"q": np.random.default_rng(2).standard_normal((2, SEQ, HIDDEN)).astype(np.float32)}
    expected = run(source, feeds)[0]
    new, report = rewrite_model(source, RewriteOptions())
    assert any(n.startswith("dropped the source's shape annotation of output 'att' [6*b, 16] (") for n in report.notes)
    output = new.graph.output[0].type.tensor_type
    assert output.elem_type == TensorProto.FLOAT
    assert len(output.shape.dim) == 3 and output.shape.dim[2].dim_value == HIDDEN
    assert not any(d.dim_param.startswith("unk__") for d in output.shape.dim)
    got = run(new, feeds)[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_a_graph_outputs_wrong_element_type_is_not_taken_for_a_stale_annotation():
    """A graph output declared int64 that a Softmax makes float: the model's interface, not an
    annotation to drop; the checker's complaint is ours, and refused as such."""
    from sit_onnx.graph.validate import SourceCheck, validate_model
    from tests.helpers import softmax_model

    typed_wrong = softmax_model([2, 5], -1)
    typed_wrong.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    assert drop_contradicted_annotations(typed_wrong) == []
    with pytest.raises(SitOnnxError, match="^the rewritten model fails onnx's checker: "):
        validate_model(typed_wrong, SourceCheck(None, None))


def test_a_model_given_by_path_is_checked_without_dropping_anything(tmp_path):
    """Models over 2 GB are checked from their file: a complaint is refused as it stands."""
    from sit_onnx.graph.validate import SourceCheck, validate_model

    source = _fused_model()
    new = onnx.ModelProto()
    new.CopyFrom(source)
    expanded, _ = expand_attention(new, 17)
    path = tmp_path / "big.onnx"
    onnx.save(expanded, str(path))
    with pytest.raises(SitOnnxError, match="^the rewritten model fails onnx's checker: .*differ in rank"):
        validate_model(str(path), SourceCheck(None, None))
    assert validate_model(expanded, SourceCheck(None, None))  # the same model in memory: dropped, noted


def test_every_stale_annotation_is_named():
    """Two fused ops, each output annotated stale: the note names both."""
    source = _fused_model()
    graph = source.graph
    graph.node.insert(
        1, helper.make_node("MultiHeadAttention", ["q", "q", "q"], ["att2"], domain="com.microsoft", num_heads=4)
    )
    graph.node.insert(2, helper.make_node("Add", ["att", "att2"], ["both"]))
    graph.node[3].input[0] = "both"
    graph.value_info.append(helper.make_tensor_value_info("att2", TensorProto.FLOAT, ["6*b", HIDDEN]))
    _, report = rewrite_model(source, RewriteOptions())
    dropped = [n for n in report.notes if n.startswith("dropped")]
    assert len(dropped) == 1 and dropped[0].startswith(
        "dropped the source's shape annotation of 'att' [6*b, 16] (inferred [b, 6, 16]), 'att2' [6*b, 16] (inferred "
    )


def _past_an_unknown_op(annotated):
    """x [b, 6] -> Relu -> r -> my.ops::Mystery -> m (annotated `annotated`) -> y: no inference
    reaches m."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Mystery", ["r"], ["m"], domain="my.ops"),
        helper.make_node("Neg", ["m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        value_info=[
            helper.make_tensor_value_info("r", TensorProto.FLOAT, ["b", 6]),
            helper.make_tensor_value_info("m", TensorProto.FLOAT, annotated),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])


def test_an_annotation_no_inference_reaches_goes_when_asked_to_confirm_and_stays_otherwise():
    for unconfirmed, kept in ((True, ["r"]), (False, ["r", "m"])):
        model = _past_an_unknown_op(["b", 6])
        assert drop_contradicted_annotations(model, {"r", "m"}, unconfirmed=unconfirmed) == []
        assert list(_annotations(model)) == kept
    model = _past_an_unknown_op(["b", 6])
    assert drop_contradicted_annotations(model) == [] and list(_annotations(model)) == ["r", "m"]  # the default


def test_onnxruntimes_inference_runs_only_for_an_audited_annotation_onnx_cannot_reach(monkeypatch):
    """It costs seconds on a large model: auditing `r` alone, which onnx's inference reaches, does
    not run it although `m` (not audited) lies past an op onnx does not know."""
    import sit_onnx.graph.validate as validate

    calls = []
    monkeypatch.setattr(validate, "symbolic_types", lambda model, guess: calls.append(guess) or {})
    drop_contradicted_annotations(_past_an_unknown_op(["b", 6]), {"r"}, unconfirmed=True)
    assert calls == []
    drop_contradicted_annotations(_past_an_unknown_op(["b", 6]), {"m"}, unconfirmed=True)
    assert calls == [False]


def test_a_scalar_annotation_inference_gives_no_rank_is_not_confirmed():
    from sit_onnx.graph.validate import _confirmed

    scalar = _tensor_type(TensorProto.FLOAT, [])
    assert not _confirmed(scalar, _tensor_type(TensorProto.FLOAT, None))
    assert not _confirmed(scalar, None)
    assert _confirmed(scalar, _tensor_type(TensorProto.FLOAT, []))


def test_the_inconsistent_source_message_names_every_annotation_dropped():
    from sit_onnx.graph.validate import SourceCheck, validate_model

    broken = _fused_model(reader="Gemm")
    broken, _ = expand_attention(broken, 17)
    del broken.graph.value_info[:]  # as if taken out before: the Gemm still reads a rank-3 tensor
    with pytest.raises(SitOnnxError) as raised:
        validate_model(
            broken, SourceCheck(None, None), ["'att' [6*b, 16] (inferred [b, 6, 16])", "'q' [1] (inferred [b, 6, 16])"]
        )
    assert str(raised.value).startswith(
        "the source is inconsistent: its shape annotation of 'att' [6*b, 16] (inferred [b, 6, 16]), 'q' [1] "
        "(inferred [b, 6, 16]) contradicts what its own ops compute, and without it onnx's checker says: "
    )


def test_an_annotation_without_a_shape_or_of_a_sequence_has_nothing_to_confirm_and_stays():
    """A type alone (onnx's version converter writes a legacy Softmax's output so; float16 tools
    write outputs so) and a sequence of tensors claim no dims: they were dropped and listed under
    --explain as "'s' []", dims the source never gave."""
    nodes = [
        helper.make_node("SequenceConstruct", ["x", "x"], ["s"]),
        helper.make_node("SequenceAt", ["s", "i"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(np.array(0, np.int64), "i")],
        value_info=[
            helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, ["n", 4]),
            helper.make_value_info("r", helper.make_tensor_type_proto(TensorProto.FLOAT, None)),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [5, 4]),  # a fixed dim nothing proves
        ],
    )
    source = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    new, report = rewrite_model(source, RewriteOptions())
    assert report.unproven_annotations == ["'a' [5, 4]"]
    assert [info.name for info in new.graph.value_info] == ["s", "r"]
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    assert np.abs(run(new, {"x": x})[0] - run(source, {"x": x})[0]).max() < 0.02
