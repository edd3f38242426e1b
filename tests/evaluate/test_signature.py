"""Two models fed one set of arrays (`eval`/`energy --converted`, `compare`): a model that takes other
inputs is refused in one line naming both files and the first difference, where it had failed inside
onnxruntime under the label "model"."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.signature import check_same_inputs, fed_inputs
from tests.helpers import softmax_model

LABELS = ("ref.onnx", "cand.onnx")


def _renamed(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    old = model.graph.input[0].name
    model.graph.input[0].name = name
    for node in model.graph.node:
        node.input[:] = [name if i == old else i for i in node.input]
    return model


def _refusal(reference, candidate, **kwargs) -> str:
    with pytest.raises(SitOnnxError) as caught:
        check_same_inputs(reference, candidate, LABELS, **kwargs)
    return str(caught.value)


def test_fed_inputs_skip_defaulted_ones_and_keep_dims_as_given():
    model = softmax_model(["n", 6], -1)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3]))
    model.graph.initializer.append(helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]))
    unknown = helper.make_tensor_value_info("u", TensorProto.INT64, None)
    model.graph.input.append(unknown)
    assert fed_inputs(model) == {"x": (TensorProto.FLOAT, ["n", 6]), "u": (TensorProto.INT64, None)}


def test_the_same_model_and_another_batch_pass():
    check_same_inputs(softmax_model(["n", 6], -1), softmax_model(["n", 6], -1), LABELS)
    # a fixed-batch export runs a batch at a time: the batch may differ, as may a symbolic dim
    check_same_inputs(softmax_model(["n", 6], -1), softmax_model([1, 6], -1), LABELS)
    check_same_inputs(softmax_model([4, 6], -1), softmax_model([2, "m"], -1), LABELS)


def test_other_names_are_refused_naming_both_sets():
    said = _refusal(softmax_model(["n", 6], -1), _renamed(softmax_model(["n", 6], -1), "y0"), hint=" (a hint)")
    assert said == "cand.onnx: takes the inputs y0, ref.onnx takes x (a hint)"


def test_another_fixed_size_past_the_batch_or_another_rank_is_refused():
    said = _refusal(softmax_model(["n", 6], -1), softmax_model(["n", 5], -1))
    assert said == "cand.onnx: its input 'x' has shape [n, 5], ref.onnx's has [n, 6]"
    said = _refusal(softmax_model(["n", 6], -1), softmax_model(["n", 2, 6], -1))
    assert said == "cand.onnx: its input 'x' has shape [n, 2, 6], ref.onnx's has [n, 6]"


def test_element_types_differ_only_between_floats_and_only_when_allowed():
    half = softmax_model(["n", 6], -1, dtype=TensorProto.FLOAT16)
    said = _refusal(softmax_model(["n", 6], -1), half)
    assert said == "cand.onnx: its input 'x' is float16, ref.onnx's is float"
    check_same_inputs(softmax_model(["n", 6], -1), half, LABELS, float_types_may_differ=True)
    ids = softmax_model(["n", 6], -1)
    ids.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    said = _refusal(softmax_model(["n", 6], -1), ids, float_types_may_differ=True)
    assert said == "cand.onnx: its input 'x' is int64, ref.onnx's is float"


def test_refusals_spell_unknown_dims_sequences_empty_and_several_input_sets():
    unnamed = softmax_model(["n", 2, 6], -1)
    unnamed.graph.input[0].type.tensor_type.shape.dim[0].Clear()  # a dim with neither size nor name
    said = _refusal(softmax_model(["n", 6], -1), unnamed)
    assert said == "cand.onnx: its input 'x' has shape [?, 2, 6], ref.onnx's has [n, 6]"
    sequence = softmax_model(["n", 6], -1)
    sequence.graph.input[0].type.CopyFrom(helper.make_sequence_type_proto(helper.make_tensor_type_proto(1, None)))
    assert (
        _refusal(softmax_model(["n", 6], -1), sequence)
        == "cand.onnx: its input 'x' is not a tensor, ref.onnx's is float"
    )
    two = softmax_model(["n", 6], -1)
    two.graph.input.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [1]))
    two.graph.input.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, [1]))
    assert _refusal(softmax_model(["n", 6], -1), two) == "cand.onnx: takes the inputs a, b, x, ref.onnx takes x"
    none = softmax_model(["n", 6], -1)
    none.graph.initializer.append(helper.make_tensor("x", TensorProto.FLOAT, [1, 6], [0.0] * 6))
    assert _refusal(two, none) == "cand.onnx: takes the inputs none, ref.onnx takes a, b, x"
    assert _refusal(none, two) == "cand.onnx: takes the inputs a, b, x, ref.onnx takes none"


@pytest.fixture
def files(tmp_path):
    paths = {}
    models = {
        "a": softmax_model(["n", 6], -1),
        "half": softmax_model(["n", 6], -1, dtype=TensorProto.FLOAT16),
        "five": softmax_model(["n", 5], -1),
        "renamed": _renamed(softmax_model(["n", 6], -1), "y0"),
    }
    for name, model in models.items():
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(model, str(paths[name]))
    paths["a.sit"] = tmp_path / "a.sit.onnx"
    assert CliRunner().invoke(main, ["rewrite", str(paths["a"]), "-o", str(paths["a.sit"])]).exit_code == 0
    rng = np.random.default_rng(0)
    paths["data"] = tmp_path / "x.npz"
    np.savez(paths["data"], x=rng.normal(0, 3, (10, 6)).astype(np.float32), labels=np.arange(10) % 6)
    return paths


@pytest.mark.parametrize("command", ["eval", "energy"])
@pytest.mark.parametrize(
    "source, converted, said",
    [
        ("half", "a.sit", "its input 'x' is float, {source}'s is float16"),
        ("a", "five", "its input 'x' has shape [n, 5], {source}'s has [n, 6]"),
        ("a", "renamed", "takes the inputs y0, {source} takes x"),
    ],
)
def test_a_converted_model_taking_other_inputs_is_refused(files, command, source, converted, said):
    args = [command, str(files[source]), "--converted", str(files[converted]), "--data", str(files["data"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.stdout == ""
    want = f"{files[converted]}: {said.format(source=files[source])} (--converted takes {files[source]} converted)"
    assert result.stderr.strip() == f"Error: {want}"


def test_a_converted_model_of_the_same_inputs_still_evaluates(files):
    args = ["eval", str(files["a"]), "--converted", str(files["a.sit"]), "--data", str(files["data"]), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    "candidate, said", [("five", "its input 'x' has shape [n, 5]"), ("renamed", "takes the inputs y0")]
)
def test_compare_refuses_a_candidate_taking_other_inputs(files, candidate, said):
    result = CliRunner().invoke(main, ["compare", str(files["a"]), str(files[candidate])])
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {files[candidate]}: {said}")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("reference, candidate", [("half", "a.sit"), ("a.sit", "half")])
def test_compare_feeds_each_model_its_own_float_type(files, reference, candidate):
    """float16 against float32 (a model and its float16 export): the feeds are cast per model; onnxruntime
    had refused them ("Unexpected input data type")."""
    args = ["compare", str(files[reference]), str(files[candidate]), "--json"]
    floor = [["--noise-floor"]] if candidate == "a.sit" else []  # the floor rounds a converted model's weights
    for extra in [[], ["--inputs", str(files["data"])], *floor]:
        result = CliRunner().invoke(main, args + extra)
        assert result.exit_code == 0, (extra, result.stderr)
