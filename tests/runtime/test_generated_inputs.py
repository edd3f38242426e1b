"""`run` and `compare` without --inputs: what generate_feeds makes for each input type and shape."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.inputs import GENERATED_LENGTH, SENTENCES, describe_feeds, generate_feeds, index_bounds
from sit_onnx.graph.convert import RewriteOptions
from sit_onnx.graph.convert_file import rewrite_file
from tests.helpers import softmax_model


def _session(inputs):
    """An identity per input, so the session exposes exactly these input specs."""
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name, _, _ in inputs]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in inputs],
        [helper.make_tensor_value_info(f"{name}_out", dtype, shape) for name, dtype, shape in inputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_each_type_gets_its_own_values_and_dynamic_dims_batch_then_sixteen():
    session = _session([
        ("x", TensorProto.FLOAT, ["batch", 3, "seq"]),
        ("h", TensorProto.FLOAT16, [2, 5]),
        ("ids", TensorProto.INT64, ["batch", "seq"]),
        ("small", TensorProto.INT8, [64]),
        ("flag", TensorProto.BOOL, [4, 64]),
        ("free", TensorProto.FLOAT, [2, None]),
    ])  # fmt: skip
    feeds = generate_feeds(session)
    assert {k: (v.dtype, v.shape) for k, v in feeds.items()} == {
        "x": (np.float32, (1, 3, GENERATED_LENGTH)),
        "h": (np.float16, (2, 5)),
        "ids": (np.int64, (1, GENERATED_LENGTH)),
        "small": (np.int8, (64,)),
        "flag": (np.bool_, (4, 64)),
        "free": (np.float32, (2, GENERATED_LENGTH)),  # an unnamed dynamic dim too
    }
    assert GENERATED_LENGTH > 1  # a length-1 softmax axis is exactly 1: it would hide every error
    assert set(np.unique(feeds["small"])) == {0, 1, 2, 3}  # no table to read a bound from: small ids
    assert set(np.unique(feeds["flag"])) == {False, True}
    np.testing.assert_array_equal(
        feeds["x"].ravel(), np.random.default_rng(0).standard_normal(3 * GENERATED_LENGTH).astype(np.float32)
    )
    batched = generate_feeds(session, batch=4)
    assert batched["x"].shape == (4, 3, GENERATED_LENGTH) and batched["ids"].shape == (4, GENERATED_LENGTH)
    again, other = generate_feeds(session, seed=0), generate_feeds(session, seed=1)
    assert all(np.array_equal(again[k], feeds[k]) for k in feeds)  # the default seed is 0, reproducibly
    assert not np.array_equal(other["h"], feeds["h"])


def test_a_named_dim_keeps_one_size_across_inputs():
    session = _session([("a", TensorProto.FLOAT, [3, "n"]), ("b", TensorProto.FLOAT, ["n", "n"])])
    feeds = generate_feeds(session, batch=5)
    assert feeds["a"].shape == (3, GENERATED_LENGTH) and feeds["b"].shape == (GENERATED_LENGTH, GENERATED_LENGTH)
    session = _session([("a", TensorProto.FLOAT, ["n", 2]), ("b", TensorProto.FLOAT, [2, "n"])])
    feeds = generate_feeds(session, batch=5)
    assert feeds["a"].shape == (5, 2) and feeds["b"].shape == (2, 5)  # first seen as the batch, kept so


@pytest.mark.parametrize(
    "order",
    [("past", "mask"), ("mask", "past")],  # the sum met before or after its terms
)
def test_a_dim_named_by_arithmetic_is_computed_from_its_terms(order):
    """optimum's decoders: attention_mask is [batch, 'past_sequence_length + sequence_length'], and
    the model fails unless it matches the past's length plus the ids' length."""
    specs = {
        "ids": ("ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        "past": ("past", TensorProto.FLOAT, ["batch_size", 2, "past_sequence_length", 4]),
        "mask": ("mask", TensorProto.INT64, ["batch_size", "past_sequence_length + sequence_length"]),
    }
    session = _session([specs["ids"]] + [specs[name] for name in order])
    feeds = generate_feeds(session, batch=3)
    assert feeds["past"].shape == (3, 2, GENERATED_LENGTH, 4) and feeds["mask"].shape == (3, 2 * GENERATED_LENGTH)
    session = _session([
        ("a", TensorProto.FLOAT, ["n", "2*m - 1"]),
        ("b", TensorProto.FLOAT, ["n", "m // 4", "m + 3"]),
        ("odd", TensorProto.FLOAT, ["n", "m - m", "floor(m)", "m +"]),  # not a positive sum: names
    ])  # fmt: skip
    feeds = generate_feeds(session, batch=2)
    length = GENERATED_LENGTH
    assert feeds["a"].shape == (2, 2 * length - 1) and feeds["b"].shape == (2, length // 4, length + 3)
    assert feeds["odd"].shape == (2, length, length, length)


def test_masks_are_all_ones_of_their_dtype_and_bool_masks_stay_random():
    session = _session([
        ("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ("Pixel_Mask", TensorProto.FLOAT, [2, 3]),
        ("key_padding_mask", TensorProto.BOOL, [32, 32]),
    ])  # fmt: skip
    feeds = generate_feeds(session, batch=2)
    assert feeds["attention_mask"].dtype == np.int64 and np.all(feeds["attention_mask"] == 1)
    assert feeds["Pixel_Mask"].dtype == np.float32 and np.all(feeds["Pixel_Mask"] == 1)  # any case of "mask"
    assert set(np.unique(feeds["key_padding_mask"])) == {False, True}  # True means "pad" as often as "keep"
    assert abs(feeds["key_padding_mask"].mean() - 0.5) < 0.08  # half of them, either way


def _embedding_model(table_rows, axis=0, chain=("Cast",), ids_type=TensorProto.INT32, table_as_constant=False):
    """ids -> chain -> Gather(table, ids, axis): an embedding as exporters write it."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((table_rows, 3) if axis in (0, -2) else (3, table_rows)).astype(np.float32)
    nodes, name = [], "ids"
    for i, op in enumerate(chain):
        attrs = {"to": TensorProto.INT64} if op == "Cast" else {}
        extra = {"Reshape": ["shape"], "Unsqueeze": ["axes"]}.get(op, [])
        nodes.append(helper.make_node(op, [name, *extra], [f"c{i}"], **attrs))
        name = f"c{i}"
    initializers = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("shape", -1), ("axes", 0))]
    if table_as_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["table"], value=numpy_helper.from_array(table)))
    else:
        initializers.append(numpy_helper.from_array(table, "table"))
    nodes.append(helper.make_node("Gather", ["table", name], ["y"], axis=axis))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", ids_type, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "rows, axis, chain, as_constant",
    [
        (30, 0, ("Cast",), False),
        (7, 1, ("Reshape", "Cast", "Unsqueeze"), False),
        (7, -2, ("Cast",), False),  # a negative axis counts from the end
        (300, 0, (), True),
        (1, 0, ("Cast",), False),  # a one-row table: every id 0
    ],
)
def test_ids_stay_inside_their_embedding_table(rows, axis, chain, as_constant):
    model = _embedding_model(rows, axis, chain, table_as_constant=as_constant)
    assert index_bounds(model) == {"ids": rows}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = generate_feeds(session, batch=64, model=model)
    assert feeds["ids"].dtype == np.int32 and feeds["ids"].min() >= 0 and feeds["ids"].max() == rows - 1
    session.run(None, feeds)  # every id is valid


@pytest.mark.parametrize("ids_type, top", [(TensorProto.INT8, 127), (TensorProto.UINT8, 255)])
def test_a_table_larger_than_the_id_type_gives_every_value_of_the_type(ids_type, top):
    model = _embedding_model(300, ids_type=ids_type)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = generate_feeds(session, batch=256, model=model)["ids"]
    assert ids.min() == 0 and ids.max() == top  # not wrapped round, not short of the top


def test_bounds_ignore_what_does_not_carry_the_ids_unchanged():
    assert index_bounds(_embedding_model(30, chain=("Neg",))) == {}  # Neg changes the values
    model = _embedding_model(30)
    model.graph.node[-1].input[0] = "ids"  # the ids as the table: nothing to bound
    assert index_bounds(model) == {}
    two = _embedding_model(30)
    two.graph.initializer.append(numpy_helper.from_array(np.zeros((9, 2), np.float32), "small_table"))
    two.graph.node.append(helper.make_node("Gather", ["small_table", "c0"], ["z"]))
    assert index_bounds(two) == {"ids": 9}  # the tighter of two tables
    two.graph.node.append(helper.make_node("Gather", ["table", "c0"], ["w"]))
    assert index_bounds(two) == {"ids": 9}  # ...whichever comes first
    empty = _embedding_model(30)
    empty.graph.initializer[-1].dims[0] = 0
    assert index_bounds(empty) == {}
    beyond = _embedding_model(30)
    beyond.graph.node[-1].attribute[0].i = 2  # an axis the 2-D table lacks: an invalid model, no crash
    assert index_bounds(beyond) == {}
    other = _embedding_model(30)
    other.graph.node[-1].op_type = "Pow"  # two inputs, table and ids, but no gather
    del other.graph.node[-1].attribute[:]
    assert index_bounds(other) == {}
    filled = _embedding_model(30)  # ConstantOfShape also has a "value": its tensor is not the table
    filled.graph.initializer.pop()
    one = numpy_helper.from_array(np.ones(1, np.float32))
    filled.graph.node.insert(0, helper.make_node("ConstantOfShape", ["shape"], ["table"], value=one))
    assert index_bounds(filled) == {}


def test_bounds_inside_an_if_branch():
    """A merged decoder embeds its ids inside each branch of an If: the table may sit in the main
    graph (shared) or in the branch, the ids pass through a main-graph Cast first."""
    for table_in_branch in (False, True):
        inner = _embedding_model(11)
        body = [n for n in inner.graph.node if n.op_type == "Gather"]
        branch = helper.make_graph(body, "then", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        tables = [t for t in inner.graph.initializer if t.name == "table"]
        other = [t for t in inner.graph.initializer if t.name != "table"]
        if table_in_branch:
            branch.initializer.extend(tables)
        graph = helper.make_graph(
            [n for n in inner.graph.node if n.op_type != "Gather"]
            + [helper.make_node("If", ["flag"], ["out"], then_branch=branch, else_branch=branch)],
            "main",
            [*inner.graph.input, helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
            other + ([] if table_in_branch else tables),
        )
        assert index_bounds(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])) == {"ids": 11}
    merged = onnx.load(str(Path(__file__).resolve().parents[1] / "data" / "optimum_t5_decoder_merged.onnx"))
    assert index_bounds(merged) == {"input_ids": 32}  # a real export's: its 32-token vocabulary


def test_bounds_of_the_fused_embed_layer_normalization():
    tables = {"word": (50, 4), "position": (16, 4), "segment": (2, 4), "gamma": (4,), "beta": (4,)}
    inputs = ["input_ids", "segment_ids", "word", "position", "segment", "gamma", "beta", "mask", "position_ids"]
    node = helper.make_node("EmbedLayerNormalization", inputs, ["y", "m"], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["b", "s"]) for n in (*inputs[:2], "mask", inputs[8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros(shape, np.float32), name) for name, shape in tables.items()],
    )
    assert index_bounds(helper.make_model(graph)) == {"input_ids": 50, "segment_ids": 2, "position_ids": 16}
    del node.input[8]  # position_ids is optional, and usually absent
    graph.node[0].CopyFrom(node)
    assert index_bounds(helper.make_model(graph)) == {"input_ids": 50, "segment_ids": 2}


def test_the_description_names_every_generated_input():
    feeds = {
        "ids": np.array([[0, 7]], np.int64),
        "attention_mask": np.ones((1, 2), np.int64),
        "x": np.zeros(3, np.float16),
        "flag": np.ones(2, bool),
    }
    assert describe_feeds(feeds) == (
        "generated inputs: ids [1, 2] ids 0..7, attention_mask [1, 2] ones, x [3] float16, flag [2] bool"
    )
    lengths = {"lengths": np.full(3, 16, np.int64), "one": np.array([7], np.int64), "scale": np.float32(0.25)}
    lengths["pair"] = np.array([5, 5], np.int32)
    assert describe_feeds(lengths) == (
        "generated inputs: lengths [3] all 16, one [1] = 7, scale [] = 0.25, pair [2] all 5"
    )


def test_a_string_input_gets_english_sentences():
    """An end-to-end model tokenising in the graph: real words for its tokenizer."""
    session = _session([("text", TensorProto.STRING, ["batch"]), ("pairs", TensorProto.STRING, [2, 3])])
    feeds = generate_feeds(session, batch=4)
    assert feeds["text"].shape == (4,) and feeds["pairs"].shape == (2, 3)
    assert set(feeds["pairs"].ravel()) <= set(SENTENCES) and len(set(feeds["pairs"].ravel())) > 1
    assert describe_feeds(feeds) == "generated inputs: text [4] English sentences, pairs [2, 3] English sentences"
    assert session.run(None, feeds)[0].tolist() == feeds["text"].tolist()  # onnxruntime takes them as they are


@pytest.mark.parametrize("name", ["input_lengths", "lengths", "x_lens", "seq_len", "speech_lengths", "LENGTH"])
def test_lengths_take_the_full_length_of_the_other_inputs(name):
    """A Piper voice's input_lengths had been small random ids: 0-3 of its 16 phonemes were read."""
    session = _session([("input", TensorProto.INT64, ["batch", "phonemes"]), (name, TensorProto.INT64, ["batch"])])
    feeds = generate_feeds(session, batch=3)
    assert feeds[name].tolist() == [GENERATED_LENGTH] * 3 and feeds["input"].shape == (3, GENERATED_LENGTH)
    assert describe_feeds(feeds).endswith(f"{name} [3] all {GENERATED_LENGTH}")
    longer = generate_feeds(session, batch=1, length=64)
    assert longer[name].tolist() == [64]


@pytest.mark.parametrize(
    "inputs",
    [
        [("input", TensorProto.INT64, [2, 5]), ("lengthy", TensorProto.INT64, [2])],  # not a lengths name
        [("input", TensorProto.INT64, [2, 5]), ("lengths", TensorProto.INT64, [2, 2])],  # rank 2: not per row
        [("input", TensorProto.INT64, [2, 5]), ("lengths", TensorProto.FLOAT, [2])],  # not integers
        [("lengths", TensorProto.INT64, [2])],  # nothing else to read a length from
    ],
    ids=["name", "rank", "float", "alone"],
)
def test_other_inputs_are_not_taken_for_lengths(inputs):
    name = inputs[-1][0]
    plain = [(n if n != name else "plain", dtype, shape) for n, dtype, shape in inputs]  # no lengths name
    value = generate_feeds(_session(inputs))[name]
    np.testing.assert_array_equal(value, generate_feeds(_session(plain))["plain"])  # what any such input gets
    assert not np.all(value == 5)


def test_a_length_stays_inside_its_type():
    session = _session([("input", TensorProto.FLOAT, [1, 300]), ("lengths", TensorProto.INT8, [1])])
    lengths = generate_feeds(session)["lengths"]
    assert lengths.tolist() == [127] and lengths.dtype == np.int8
    session = _session([("input", TensorProto.INT64, [1, 9]), ("x_lens", TensorProto.INT32, [1])])
    assert generate_feeds(session)["x_lens"].dtype == np.int32  # the input's own type, as onnxruntime wants it


def test_an_input_type_it_cannot_make_is_named():
    session = _session([("s", TensorProto.BFLOAT16, [2])])  # numpy has no bfloat16
    with pytest.raises(SitOnnxError, match=r"^cannot generate input 's' of type tensor\(bfloat16\); pass --inputs$"):
        generate_feeds(session)


@pytest.mark.parametrize("kind", [TensorProto.INT16, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64])
def test_every_integer_width_is_generated_in_its_own_type(kind):
    """uint16 and the wider unsigned ids said "cannot generate"; ids are drawn as for int64."""
    session = _session([("ids", kind, [2, 5])])
    ids = generate_feeds(session)["ids"]
    assert ids.dtype == helper.tensor_dtype_to_np_dtype(kind) and ids.shape == (2, 5) and ids.min() >= 0


def test_run_and_compare_feed_a_small_table_valid_ids(tmp_path):
    """Ids of 0..3 would fail this model in onnxruntime (its table has 2 rows): the bound is read."""
    path = tmp_path / "emb.onnx"
    onnx.save(_embedding_model(2), str(path))
    ran = CliRunner().invoke(main, ["run", str(path), "--batch", "8", "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["outputs"][0]["shape"] == [8, GENERATED_LENGTH, 3]
    compared = CliRunner().invoke(main, ["compare", str(path), str(path)])
    assert compared.exit_code == 0, compared.output
    assert compared.output.startswith(f"generated inputs: ids [4, {GENERATED_LENGTH}] ids 0..1\n")


def test_compare_of_a_dynamic_length_softmax_sees_the_conversions_error(tmp_path):
    """With a length of 1, every softmax row is exactly [1.0] and a conversion compared equal."""
    source, converted = tmp_path / "m.onnx", tmp_path / "m.sit.onnx"
    onnx.save(softmax_model(["b", "n"], -1), str(source))
    rewrite_file(source, converted, RewriteOptions())
    record = json.loads(CliRunner().invoke(main, ["compare", str(source), str(converted), "--json"]).stdout)
    output = record["outputs"][0]
    assert output["shape"] == [4, GENERATED_LENGTH] and output["max_abs"] > 1e-4
    assert record["inputs"] == f"generated inputs: x [4, {GENERATED_LENGTH}] float32"  # --json says it too
    data = tmp_path / "in.npz"
    np.savez(data, x=np.zeros((2, 3), np.float32))
    given = CliRunner().invoke(main, ["compare", str(source), str(converted), "--inputs", str(data)])
    assert given.exit_code == 0 and "generated inputs" not in given.output
    as_json = CliRunner().invoke(main, ["compare", str(source), str(converted), "--inputs", str(data), "--json"])
    assert json.loads(as_json.stdout)["inputs"] == str(data)


def test_a_model_the_generated_inputs_do_not_fit_says_so_and_how_to_give_others(tmp_path):
    """A Reshape to rows of 49 cannot take 1 x 16 generated values (nor any longer length tried): the
    one-line error says the inputs were generated, which, and points to --inputs; with given inputs
    it says only what failed."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "rows"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("rows", TensorProto.INT64, [2], [-1, 49])],
    )
    path = tmp_path / "r.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    hint = f"(on generated inputs: x [1, {GENERATED_LENGTH}] float32; give the model's own with --inputs)"
    ran = CliRunner().invoke(main, ["run", str(path)])
    assert ran.exit_code == 1 and "onnxruntime failed to run the model" in ran.output
    assert ran.output.strip().endswith(hint) and len(ran.output.strip().splitlines()) == 1
    compared = CliRunner().invoke(main, ["compare", str(path), str(path), "--json"])
    assert compared.exit_code == 1 and "(on generated inputs: x [4, 16] float32;" in compared.output
    data = tmp_path / "in.npz"
    np.savez(data, x=np.zeros((1, 16), np.float32))
    given = CliRunner().invoke(main, ["run", str(path), "--inputs", str(data)])
    assert given.exit_code == 1 and "onnxruntime failed" in given.output and "on generated" not in given.output
    assert CliRunner().invoke(main, ["run", str(path), "--batch", "49"]).exit_code == 0  # 49 x 16: 16 rows of 49


def _exact_length_model(length: int, fixed: bool = False):
    """Takes x [b, s] only where s == length (Reshape to [0, length] keeps b and needs s = length)."""
    shape = [2, length] if fixed else ["b", "s"]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "target"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([0, length], np.int64), "target")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _runner(model):
    from sit_onnx.runtime.session import run_session

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    calls = []

    def run(feeds):
        calls.append(feeds["x"].shape)
        return run_session(session, feeds, "m.onnx")

    return session, run, calls


def test_a_model_that_cannot_take_sixteen_is_run_at_the_first_longer_length_it_takes():
    from sit_onnx.evaluate.inputs import LONGER_LENGTHS, run_generated

    model = _exact_length_model(LONGER_LENGTHS[2])
    session, run, calls = _runner(model)
    feeds, outputs = run_generated(session, 3, model, run)
    assert feeds["x"].shape == (3, LONGER_LENGTHS[2]) and outputs[0].shape == (3, LONGER_LENGTHS[2])
    # 16 at the batch asked, then probes at batch 1 up to the length that runs, then it at the batch
    assert calls == [(3, GENERATED_LENGTH), (1, GENERATED_LENGTH), (1, LONGER_LENGTHS[0]), (1, LONGER_LENGTHS[1]),
                     (1, LONGER_LENGTHS[2]), (3, LONGER_LENGTHS[2])]  # fmt: skip
    session, run, calls = _runner(model)
    assert run_generated(session, 1, model, run)[0]["x"].shape == (1, LONGER_LENGTHS[2])
    assert calls == [(1, GENERATED_LENGTH), *[(1, n) for n in LONGER_LENGTHS[:3]]]  # batch 1: 16 is not probed again
    ok = _exact_length_model(GENERATED_LENGTH)
    session, run, calls = _runner(ok)
    assert run_generated(session, 2, ok, run)[0]["x"].shape == (2, GENERATED_LENGTH) and len(calls) == 1


def test_when_no_length_runs_the_first_failure_is_reported_and_fixed_shapes_are_tried_once():
    from sit_onnx.evaluate.inputs import LONGER_LENGTHS, run_generated

    model = _exact_length_model(7)
    session, run, calls = _runner(model)
    with pytest.raises(SitOnnxError, match=r"x \[2, 16\] float32; give the model's own with --inputs"):
        run_generated(session, 2, model, run)
    assert calls == [(2, GENERATED_LENGTH), (1, GENERATED_LENGTH), *[(1, n) for n in LONGER_LENGTHS]]
    fixed = _exact_length_model(32, fixed=True)
    fixed.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([0, 5], np.int64), "target"))
    session, run, calls = _runner(fixed)
    with pytest.raises(SitOnnxError, match=r"x \[2, 32\]"):
        run_generated(session, 2, fixed, run)
    assert calls == [(2, 32)]  # no dynamic length: nothing else to try


def test_run_and_compare_find_the_length_a_model_takes(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_exact_length_model(64), str(path))
    result = CliRunner().invoke(main, ["run", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outputs"][0]["shape"] == [1, 64]
    result = CliRunner().invoke(main, ["compare", str(path), str(path)])
    assert result.exit_code == 0 and "generated inputs: x [4, 64] float32" in result.output


def test_a_dims_terms_keep_the_sizes_they_were_given():
    """`n + 1` where n is the batch (axis 0 of an earlier input) is batch + 1, not length + 1;
    an expression of 1 is 1; one with a float or a call is a name like any other."""
    session = _session([
        ("a", TensorProto.FLOAT, ["n", 2]),
        ("b", TensorProto.FLOAT, [2, "n + 1", "m - 15", "m + 1.5", "f(m) + 1"]),
    ])  # fmt: skip
    feeds = generate_feeds(session, batch=3)
    assert feeds["b"].shape == (2, 4, GENERATED_LENGTH - 15, GENERATED_LENGTH, GENERATED_LENGTH)


def _ids_and_length_model(rows: int, length: int, whole: bool = False):
    """ids [b, s] index a table of `rows`; x [b, s] must have s == length (or, `whole`, be one row
    of `length` in all: b == 1)."""
    target = [1, length] if whole else [0, length]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "target"], ["y"]), helper.make_node("Gather", ["table", "ids"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s"]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z")],
        [numpy_helper.from_array(np.array(target, np.int64), "target"),
         numpy_helper.from_array(np.zeros((rows, 2), np.float32), "table")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_longer_lengths_keep_ids_inside_their_table():
    from sit_onnx.evaluate.inputs import LONGER_LENGTHS, run_generated

    model = _ids_and_length_model(2, LONGER_LENGTHS[0])  # ids of 0..3 would fail the Gather
    session, run, calls = _runner(model)
    feeds, _ = run_generated(session, 3, model, run)
    assert feeds["x"].shape == (3, LONGER_LENGTHS[0]) and feeds["ids"].max() <= 1
    assert calls == [(3, GENERATED_LENGTH), (1, GENERATED_LENGTH), (1, LONGER_LENGTHS[0]), (3, LONGER_LENGTHS[0])]


def test_a_model_whose_every_dim_is_read_is_probed_only_at_batch_one():
    """Nothing has a length to change (its image's size comes from the graph): the batch asked,
    then one row, and no lengths."""
    from sit_onnx.evaluate.inputs import run_generated
    from tests.runtime.test_image_inputs import _vit

    model = _vit()
    model.graph.node.append(helper.make_node("Reshape", ["y", "bad_shape"], ["bad"]))
    model.graph.initializer.append(numpy_helper.from_array(np.array([7, -1], np.int64), "bad_shape"))
    model.graph.output.append(helper.make_tensor_value_info("bad", TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    calls = []

    def run(feeds):
        from sit_onnx.runtime.session import run_session

        calls.append(feeds["pixels"].shape)
        return run_session(session, feeds, "m.onnx")

    with pytest.raises(SitOnnxError, match=r"pixels \[2, 3, 12, 12\]"):
        run_generated(session, 2, model, run)
    assert calls == [(2, 3, 12, 12), (1, 3, 12, 12)]


def test_a_model_that_runs_only_at_batch_one_is_run_at_batch_one():
    """An export that fixed the batch inside (a Reshape to [1, n] while its inputs say `b`, as a
    real Khmer segmenter's does) runs on generated inputs of one row, at the first length it takes."""
    from sit_onnx.evaluate.inputs import LONGER_LENGTHS, run_generated

    model = _ids_and_length_model(40, LONGER_LENGTHS[0], whole=True)
    session, run, calls = _runner(model)
    feeds, outputs = run_generated(session, 3, model, run)
    assert feeds["x"].shape == feeds["ids"].shape == (1, LONGER_LENGTHS[0]) and outputs[0].shape == (1, 32)
    assert feeds["ids"].max() < 40 and feeds["ids"].max() >= 4  # still within (and across) the table
    assert calls == [(3, GENERATED_LENGTH), (1, GENERATED_LENGTH), (1, LONGER_LENGTHS[0]), (3, LONGER_LENGTHS[0])]
    whole_at_sixteen = _ids_and_length_model(40, GENERATED_LENGTH, whole=True)
    session, run, calls = _runner(whole_at_sixteen)
    feeds, _ = run_generated(session, 4, whole_at_sixteen, run)
    assert feeds["x"].shape == (1, GENERATED_LENGTH) and calls == [(4, GENERATED_LENGTH), (1, GENERATED_LENGTH)]


def _one_hot_model(encoding, ids_type=TensorProto.INT32, picked=False):
    """ids -> [Gather of the last position] -> one-hot (OneHot, or Equal to a class list) -> float."""
    nodes, inits, name = [], [], "ids"
    if picked:  # a decoder's last token, picked before it is embedded
        inits.append(numpy_helper.from_array(np.array(-1, np.int64), "last"))
        nodes.append(helper.make_node("Gather", ["ids", "last"], ["picked"], axis=1))
        name = "picked"
    kind, values = encoding
    if kind == "OneHot":
        inits += [numpy_helper.from_array(np.array(values, np.int64), "depth"),
                  numpy_helper.from_array(np.array([0, 1], np.float32), "off_on")]  # fmt: skip
        nodes.append(helper.make_node("OneHot", [name, "depth", "off_on"], ["y"]))
    else:
        classes = numpy_helper.from_array(np.array(values, np.int64).reshape(1, 1, -1))
        nodes.append(helper.make_node("Constant", [], ["classes"], value=classes))
        nodes.append(helper.make_node("Cast", [name], ["wide"], to=TensorProto.INT64))
        nodes.append(helper.make_node("Unsqueeze", ["wide", "axes"], ["column"]))
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), "axes"))
        equal_inputs = ["classes", "column"] if kind == "Equal, classes first" else ["column", "classes"]
        nodes.append(helper.make_node("Equal", equal_inputs, ["hot"]))
        nodes.append(helper.make_node("Cast", ["hot"], ["y"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", ids_type, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "encoding, picked",
    [
        (("OneHot", 257), False),
        (("Equal", list(range(257))), False),  # jax.nn.one_hot (Magika's bytes)
        (("Equal, classes first", list(range(5))), True),
        (("Equal", [3, 0, 2, 1, 4, 4]), False),  # every class 0..4, in any order, repeats allowed
        (("Equal", [1, 0]), False),  # two classes are a one-hot too
    ],
)
def test_one_hot_ids_stay_among_their_classes(encoding, picked):
    ids_type = TensorProto.INT64 if encoding[0] == "OneHot" else TensorProto.INT32  # onnxruntime's OneHot: int64 ids
    model = _one_hot_model(encoding, ids_type, picked=picked)
    classes = encoding[1] if encoding[0] == "OneHot" else len(set(encoding[1]))
    assert index_bounds(model) == {"ids": classes}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = generate_feeds(session, batch=512, model=model)
    assert feeds["ids"].min() == 0 and feeds["ids"].max() == classes - 1
    hot = session.run(None, feeds)[0]
    assert np.all(hot.max(-1) == 1)  # every id is one of the classes


@pytest.mark.parametrize(
    "values",
    [[0], [1, 2, 3], [0, 2, 3], [-1, 0, 1]],  # a padding test, not from 0, a gap, a negative
)
def test_an_equal_to_values_that_are_not_every_class_bounds_nothing(values):
    assert index_bounds(_one_hot_model(("Equal", values))) == {}


def test_ids_picked_by_a_gather_keep_their_embedding_bound():
    """A decoder embeds only its last token: Gather(ids, -1, axis=1), then Gather(table, ...)."""
    model = _embedding_model(40, chain=())
    model.graph.initializer.append(numpy_helper.from_array(np.array(-1, np.int64), "last"))
    model.graph.node.insert(0, helper.make_node("Gather", ["ids", "last"], ["picked"], axis=1))
    model.graph.node[-1].input[1] = "picked"
    assert index_bounds(model) == {"ids": 40}
    model.graph.node[0].op_type, model.graph.node[0].input[:] = "Neg", ["ids"]  # not a selection
    del model.graph.node[0].attribute[:]
    assert index_bounds(model) == {}


def test_one_hot_constants_read_only_when_small_and_in_the_file():
    depth = _one_hot_model(("OneHot", 7))
    assert index_bounds(depth) == {"ids": 7}
    depth.graph.initializer[0].data_location = TensorProto.EXTERNAL  # never read from disk
    assert index_bounds(depth) == {}
    pair = _one_hot_model(("OneHot", 7))
    pair.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([7, 9], np.int64), "depth"))
    assert index_bounds(pair) == {}  # a depth of two values: an invalid model, no bound and no crash
    wide = _one_hot_model(("Equal", list(range((1 << 16) + 1))))  # more classes than a small constant holds
    assert index_bounds(wide) == {}
    assert index_bounds(_one_hot_model(("Equal", list(range(1 << 16))))) == {"ids": 1 << 16}  # the most read


@pytest.mark.parametrize("memory", [None, 2**30])
def test_an_input_past_memory_is_refused_where_the_machine_does_not_say_its_memory_too(monkeypatch, memory):
    """Without sysconf (Windows) the bound is what numpy can index; a known memory bounds it first."""
    from sit_onnx.evaluate import inputs

    monkeypatch.setattr(inputs, "_physical_memory", lambda: memory)
    session = _session([("x", TensorProto.FLOAT, ["batch", 4])])
    limit = np.iinfo(np.intp).max if memory is None else memory
    rows = limit // 16 + 1  # 16 bytes a row: just past the bound
    with pytest.raises(SitOnnxError) as caught:
        generate_feeds(session, batch=rows)
    assert str(caught.value) == (
        f"generated input 'x' of shape [{rows}, 4] would take {rows * 16 / 2**30:.3g} GiB, more than this "
        f"machine's {limit / 2**30:.3g} GiB; lower --batch (now {rows})"
    )
    assert generate_feeds(session, batch=2)["x"].shape == (2, 4)
    monkeypatch.setattr(inputs, "_physical_memory", lambda: 32)
    assert generate_feeds(session, batch=2)["x"].shape == (2, 4)  # exactly the memory: still fits
