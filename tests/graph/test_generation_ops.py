"""onnxruntime's generation ops (com.microsoft GreedySearch, BeamSearch, Sampling), as
`onnxruntime.transformers`' convert_generation ships GPT-2 and T5: the decoder is a graph attribute,
run in a loop inside one node, where onnx's inference never goes. The softmax sites in it convert,
the converted model generates, and every command runs it on generated inputs: the op's controls get
a short generation's values (random ones fail the op's checks), its token ids are judged by how many
stay the same."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sit_onnx.cli import main
from sit_onnx.evaluate.inputs import describe_feeds, generate_feeds
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime.session import SessionSpec, make_session

VOCAB, WIDTH, POSITIONS = 40, 16, 64


def _decoder(rng) -> onnx.GraphProto:
    """A one-layer GPT decoder in the GPT-2 subgraph's contract (input_ids, position_ids,
    attention_mask, past_0 -> logits, present_0), without value_info, as exporters leave it: the mask
    goes through a Cast to bool into Where's condition, the masked value is a Constant node."""
    weights = {
        "wte": rng.normal(0, 1, (VOCAB, WIDTH)),
        "wpe": rng.normal(0, 0.5, (POSITIONS, WIDTH)),
        **{name: rng.normal(0, WIDTH**-0.5, (WIDTH, WIDTH)) for name in ("wq", "wk", "wv", "wo")},
    }
    weights["wte_t"] = weights["wte"].T.copy()
    ints = {"zero": [0], "one": [1], "axis1": [1], "axes12": [1, 2]}
    n = helper.make_node
    nodes = [
        n("Cast", ["input_ids"], ["ids"], to=TensorProto.INT64),
        n("Cast", ["position_ids"], ["pos"], to=TensorProto.INT64),
        n("Gather", ["wte", "ids"], ["tok"]),
        n("Gather", ["wpe", "pos"], ["place"]),
        n("Add", ["tok", "place"], ["h"]),
        *[n("MatMul", ["h", f"w{x}"], [f"{x}3"]) for x in "qkv"],
        *[n("Unsqueeze", [f"{x}3", "axis1"], [f"{x}_new"]) for x in "qkv"],  # one head: [B, 1, S, E]
        n("Gather", ["past_0", "zero"], ["past_k1"], axis=0),
        n("Gather", ["past_0", "one"], ["past_v1"], axis=0),
        n("Squeeze", ["past_k1", "zero"], ["past_k"]),
        n("Squeeze", ["past_v1", "zero"], ["past_v"]),
        n("Concat", ["past_k", "k_new"], ["k"], axis=2),
        n("Concat", ["past_v", "v_new"], ["v"], axis=2),
        n("Unsqueeze", ["k", "zero"], ["k5"]),
        n("Unsqueeze", ["v", "zero"], ["v5"]),
        n("Concat", ["k5", "v5"], ["present_0"], axis=0),
        n("Transpose", ["k"], ["k_t"], perm=[0, 1, 3, 2]),
        n("MatMul", ["q_new", "k_t"], ["product"]),
        n("Constant", [], ["scale"], value=numpy_helper.from_array(np.array(WIDTH**-0.5, np.float32))),
        n("Mul", ["product", "scale"], ["scores"]),
        n("Cast", ["attention_mask"], ["keep"], to=TensorProto.BOOL),
        n("Unsqueeze", ["keep", "axes12"], ["keep4"]),
        n("Constant", [], ["filler"], value=numpy_helper.from_array(np.array(-1e4, np.float32))),
        n("Where", ["keep4", "scores", "filler"], ["masked"]),
        n("Softmax", ["masked"], ["weights"], axis=-1, name="attention"),
        n("MatMul", ["weights", "v"], ["context4"]),
        n("Squeeze", ["context4", "axis1"], ["context"]),
        n("MatMul", ["context", "wo"], ["mixed"]),
        n("Add", ["h", "mixed"], ["h2"]),
        n("MatMul", ["h2", "wte_t"], ["logits"]),
    ]
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    initializers += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT32, ["b", "s"]) for name in ("input_ids", "position_ids")
    ]
    inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["b", "t"]))
    inputs.append(helper.make_tensor_value_info("past_0", TensorProto.FLOAT, [2, "b", 1, "p", WIDTH]))
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", VOCAB]),
        helper.make_tensor_value_info("present_0", TensorProto.FLOAT, [2, "b", 1, "t", WIDTH]),
    ]
    return helper.make_graph(nodes, "gpt decoder", inputs, outputs, initializers)


CONTROLS = {  # each op's inputs after input_ids and their types
    "GreedySearch": [("max_length", TensorProto.INT32), ("min_length", TensorProto.INT32),
                     ("repetition_penalty", TensorProto.FLOAT)],
    "BeamSearch": [("max_length", TensorProto.INT32), ("min_length", TensorProto.INT32),
                   ("num_beams", TensorProto.INT32), ("num_return_sequences", TensorProto.INT32),
                   ("length_penalty", TensorProto.FLOAT), ("repetition_penalty", TensorProto.FLOAT)],
}  # fmt: skip
CONTROLS["Sampling"] = [*CONTROLS["GreedySearch"], *[("", 0)] * 4, ("seed", TensorProto.INT32)]  # no masks


def generation_model(op: str, seed: int = 0) -> onnx.ModelProto:
    """`op` around the decoder, its controls graph inputs named as convert_generation names them."""
    names = [name for name, _ in CONTROLS[op]]
    node = helper.make_node(
        op, ["prompt", *names], ["sequences"], domain="com.microsoft", name=op.lower(),
        decoder=_decoder(np.random.default_rng(seed)), eos_token_id=VOCAB - 1, pad_token_id=0, model_type=0,
    )  # fmt: skip
    inputs = [helper.make_tensor_value_info("prompt", TensorProto.INT32, ["batch", "length"])]
    inputs += [helper.make_tensor_value_info(name, elem, [1]) for name, elem in CONTROLS[op] if name]
    rank = ["batch", "sequences", "max"] if op == "BeamSearch" else ["batch", "max"]
    output = helper.make_tensor_value_info("sequences", TensorProto.INT32, rank)
    graph = helper.make_graph([node], op, inputs, [output])
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )


def _generate(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return make_session(model, SessionSpec()).run(None, feeds)[0]


@pytest.fixture(scope="module", params=["GreedySearch", "BeamSearch"])
def generation(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    model = generation_model(request.param)
    onnx.save(model, folder / "source.onnx")
    return request.param, model, folder


def test_the_decoders_softmax_converts_in_float_and_the_model_generates(generation):
    op, model, _ = generation
    converted, report = rewrite_model(model, RewriteOptions(steps=16))
    assert [(s.name, s.graph, s.converted, s.role) for s in report.sites] == [
        ("attention", "gpt decoder", True, "attention")
    ]
    decoder = onnx.helper.get_attribute_value(converted.graph.node[0].attribute[0])
    casts = [a.i for n in decoder.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    assert casts == [TensorProto.INT64, TensorProto.INT64, TensorProto.BOOL]  # none added: the logits are float
    feeds = generate_feeds(make_session(model, SessionSpec(use_library=False)), batch=3, model=model)
    before, after = _generate(model, feeds), _generate(converted, feeds)
    assert before.shape == after.shape and before.shape[-1] == 32  # the prompt's 16 and 16 new tokens
    prompt = feeds["prompt"][:, None, :] if op == "BeamSearch" else feeds["prompt"]
    assert (before[..., :16] == prompt).all() and (after[..., :16] == prompt).all()
    assert (after == before).mean() >= 0.9, (before, after)


def test_generated_inputs_are_a_short_generation_and_ids_below_the_vocabulary(generation):
    op, model, _ = generation
    feeds = generate_feeds(make_session(model, SessionSpec(use_library=False)), batch=2, model=model)
    assert feeds["prompt"].shape == (2, 16) and 0 <= feeds["prompt"].min() and feeds["prompt"].max() < VOCAB
    assert feeds["prompt"].max() >= 4  # not the small ids of an input no table bounds
    want = {"max_length": 32, "min_length": 1, "repetition_penalty": 1.0}
    if op == "BeamSearch":
        want.update(num_beams=2, num_return_sequences=1, length_penalty=1.0)
    assert {name: value.item() for name, value in feeds.items() if name != "prompt"} == want
    assert all(
        feeds[name].dtype == (np.float32 if elem == TensorProto.FLOAT else np.int32) for name, elem in CONTROLS[op]
    )
    assert "max_length [1] = 32, min_length [1] ones" in describe_feeds(feeds)


def test_compare_runs_both_on_generated_inputs_and_judges_the_tokens(generation):
    op, model, folder = generation
    target = folder / "converted.onnx"
    assert (
        CliRunner()
        .invoke(main, ["rewrite", str(folder / "source.onnx"), "-o", str(target), "-k", "16", "--force"])
        .exit_code
        == 0
    )
    result = CliRunner().invoke(main, ["compare", str(folder / "source.onnx"), str(target), "--noise-floor"])
    assert result.exit_code == 0, result.output
    assert (
        "noise floor (attention weights rounded to float16): cosine 1.000000, values the same 100.00%" in result.output
    )
    shape = "[4, 1, 32]" if op == "BeamSearch" else "[4, 32]"
    assert f"[sequences] shape {shape}, approximate: values the same >= 0.99 (an integer output)" in result.output
    assert "    values the same: 100.00% of elements (0 differ); rows the same: 4 of 4\n" in result.output
    assert "argmax" not in result.output and "Sampling" not in result.output


def test_calibration_energy_and_eval_say_what_they_cannot_read(generation, tmp_path):
    _, model, folder = generation
    session = make_session(model, SessionSpec(use_library=False))
    data = tmp_path / "prompts.npz"
    np.savez(data, **generate_feeds(session, batch=2, model=model))
    source = str(folder / "source.onnx")
    calibrated = CliRunner().invoke(main, ["rewrite", source, "-o", str(tmp_path / "c.onnx"), "--calibrate", str(data)])
    assert calibrated.exit_code == 0 and calibrated.output.splitlines()[-1] == (
        "note: 1 converted site lies where the data cannot be read out (a Loop or Scan body, a generation op's "
        "subgraph): the shipped default set there"
    )
    as_json = CliRunner().invoke(
        main, ["rewrite", source, "-o", str(tmp_path / "j.onnx"), "--calibrate", str(data), "--json"]
    )
    assert json.loads(as_json.output)["uncalibrated"] == ["attention"]
    statistics = CliRunner().invoke(main, ["calibrate", source, "--data", str(data)])
    assert statistics.exit_code == 1 and statistics.output.strip() == (
        f"Error: {source}: its 1 softmax site lies where the data cannot be read out (a Loop or Scan body, a "
        "generation op's subgraph): nothing to calibrate"
    )
    energy = CliRunner().invoke(main, ["energy", source, "--data", str(data)])
    assert energy.exit_code == 1 and energy.output.strip() == (
        "Error: the model's 7 Conv/MatMul/Gemm layers all lie in subgraphs (Loop bodies, a generation op's decoder, "
        "an If whose condition the data does not fix), whose values cannot be read out: estimate the subgraph's "
        "model on its own (a decoder exported alone)"
    )
    layers = CliRunner().invoke(main, ["layers", source, "--data", str(data), "--json"])
    assert [(r["converted_sites"], r["agreement_of"]) for r in json.loads(layers.output)["rows"]] == [
        (0, "values"),
        (1, "values"),
    ]
    table = CliRunner().invoke(main, ["layers", source, "--data", str(data)]).output
    assert "values the same" in table and "argmax" not in table
    evaluated = CliRunner().invoke(main, ["eval", source, "--data", str(data), "-k", "16"])
    assert evaluated.exit_code == 0 and "[sequences] values the same 100.00%, cosine" in evaluated.output


def test_controls_are_set_by_their_place_in_the_op_whatever_their_names_and_odd_nodes_are_left_alone():
    from sit_onnx.evaluate.generation_inputs import set_controls

    def model_of(op, inputs):
        node = helper.make_node(op, inputs, ["out"], domain="com.microsoft")
        return helper.make_model(helper.make_graph([node], "g", [], []))

    feeds = {"features": np.zeros((1, 80, 30), np.float32), "most": np.array([5], np.int32),
             "heat": np.array([0.3], np.float32), "beams": np.array([9], np.int32)}  # fmt: skip
    whisper = ["features", "most", "", "beams", *[""] * 10, "heat"]  # a float prompt: 16 new tokens
    set_controls(model_of("WhisperBeamSearch", whisper), feeds)
    assert {k: v.tolist() for k, v in feeds.items() if k != "features"} == {"most": [16], "heat": [1.0], "beams": [2]}
    sampling = {"ids": np.zeros((2, 5), np.int64), "n": np.array([0], np.int64), "seed": np.array([7], np.int32),
                "presence": np.zeros((2, 40), np.int32)}  # fmt: skip
    set_controls(model_of("Sampling", ["ids", "n", "", "", "", "", "", "presence", "seed"]), sampling)
    assert sampling["n"].tolist() == [21] and sampling["seed"].tolist() == [1] and sampling["n"].dtype == np.int64
    assert sampling["presence"].min() == 0  # a presence mask is no mask of the prompt: left as drawn
    masks = {"ids": np.zeros((1, 4), np.int32), "banned": np.zeros(40, np.int32), "keep": np.zeros((1, 4), np.int32)}
    set_controls(model_of("GreedySearch", ["ids", "", "", "", "banned", "", "keep"]), masks)
    assert all(v.min() == 1 and v.dtype == np.int32 for k, v in masks.items() if k != "ids")  # whatever their names
    through = {"ids": np.zeros((2, 5), np.int32), "n": np.array([0], np.int32), "banned": np.ones(40, np.int32)}
    set_controls(model_of("GreedySearch", ["cast_ids", "n", "", "", "banned"]), through)
    assert through["n"].tolist() == [21]  # the prompt read through a Cast: the 2-D ids, not the longer 1-D mask
    untouched = {"a": np.array([3], np.int32)}
    for op, inputs in (("GreedySearch", []), ("Attention", ["x", "a"]), ("GreedySearch", ["x", "computed"])):
        set_controls(model_of(op, inputs), untouched)
        assert untouched["a"].tolist() == [3]


def test_a_t5_style_prompt_is_bounded_by_the_encoders_table_not_the_decoders():
    from sit_onnx.evaluate.inputs import index_bounds

    def lookup(name, rows):
        table = numpy_helper.from_array(np.zeros((rows, 4), np.float32), f"{name}_table")
        ids = helper.make_tensor_value_info(f"{name}_ids", TensorProto.INT32, ["b", "s"])
        nodes = [helper.make_node("Gather", [f"{name}_table", f"{name}_ids"], [f"{name}_out"])]
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)
        return helper.make_graph(nodes, name, [ids], [out], [table])

    def bounds(**subgraphs):
        node = helper.make_node("BeamSearch", ["prompt"], ["sequences"], domain="com.microsoft", **subgraphs)
        prompt = helper.make_tensor_value_info("prompt", TensorProto.INT32, ["b", "s"])
        return index_bounds(helper.make_model(helper.make_graph([node], "g", [prompt], [])))

    assert bounds(encoder=lookup("encoder", 30), decoder=lookup("decoder", 50)) == {"prompt": 30}
    assert bounds(decoder=lookup("decoder", 50)) == {"prompt": 50}
    assert bounds() == {}
    node = helper.make_node("BeamSearch", ["made"], ["s"], domain="com.microsoft", decoder=lookup("decoder", 50))
    made = helper.make_node("Add", ["prompt", "prompt"], ["made"])  # a prompt computed: no table bounds it
    prompt = helper.make_tensor_value_info("prompt", TensorProto.INT32, ["b", "s"])
    assert index_bounds(helper.make_model(helper.make_graph([made, node], "g", [prompt], []))) == {}


def test_a_broken_decoder_is_refused_in_one_line_naming_where(tmp_path):
    """The checker stops at the first complaint it tolerates (the untyped output of a generation op's
    exported model) before the decoder: a tensor made twice or a cycle there had reached the rewrite
    as an internal error."""
    from sit_onnx.graph.validate import structural_complaint

    model = generation_model("GreedySearch")
    model.graph.output[0].type.tensor_type.ClearField("shape")  # what onnx's checker tolerates first
    decoder = model.graph.node[0].attribute[0].g
    assert structural_complaint(model.graph) is None  # a decoder reading only its own and outer tensors
    concat = next(n for n in decoder.node if n.output[0] == "present_0")
    concat.output[0] = "input_ids"
    path = tmp_path / "broken.onnx"
    onnx.save(model, path)
    result = CliRunner().invoke(main, ["rewrite", str(path), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 1 and result.stderr.strip() == (
        f"Error: {path}: not a valid ONNX model (tensor 'input_ids' is produced more than once, in the decoder "
        "of GreedySearch 'greedysearch')"
    )
    assert not (tmp_path / "out.onnx").exists() and [p.name for p in tmp_path.iterdir()] == ["broken.onnx"]
    concat.output[0] = "present_0"
    concat.input[0] = "present_0"  # a cycle
    assert structural_complaint(model.graph) == (
        "a node reads a tensor that nothing produces, or the nodes form a cycle, in the decoder of GreedySearch "
        "'greedysearch'"
    )
    concat.input[0] = "prompt"  # the outer graph's input: visible inside
    assert structural_complaint(model.graph) is None


def test_sampling_gets_a_fixed_seed_so_both_models_draw_alike(tmp_path):
    """Sampling's seed input, where the model has one, is fixed: a run repeats itself, and the original
    and the converted model draw the same random numbers. Their tokens still part ways where the
    conversion moved a probability across a draw, as any change of the logits does (measured on this
    random decoder: 50-80% of new tokens the same at K = 8-16): compare judges sampling honestly."""
    model = generation_model("Sampling")
    session = make_session(model, SessionSpec())
    feeds = generate_feeds(make_session(model, SessionSpec(use_library=False)), batch=4, model=model)
    assert {name: value.tolist() for name, value in feeds.items() if name != "prompt"} == {
        "max_length": [32], "min_length": [1], "repetition_penalty": [1.0], "seed": [1]
    }  # fmt: skip
    first = session.run(None, feeds)[0]
    assert first.shape == (4, 32) and (session.run(None, feeds)[0] == first).all()
    converted, _ = rewrite_model(model, RewriteOptions())
    drawn = make_session(converted, SessionSpec()).run(None, feeds)[0]
    assert drawn.shape == first.shape and (drawn[:, :16] == feeds["prompt"]).all()
    source, target = tmp_path / "sampling.onnx", tmp_path / "sampling.sit.onnx"
    onnx.save(model, source)
    onnx.save(converted, target)
    said = CliRunner().invoke(main, ["compare", str(source), str(target)]).output
    assert "    note: tokens drawn by Sampling (one seed for both models): they part ways wherever" in said


def _fused_greedy_search(rng) -> onnx.ModelProto:
    """GPT-2 as convert_generation writes it after onnxruntime's optimizer: the decoder's attention a
    com.microsoft Attention with past, a 2-D mask and unidirectional=1; the embedding table shared
    from the main graph (convert_generation moves shared weights there)."""
    heads = 2
    weights = {"wqkv": rng.normal(0, WIDTH**-0.5, (WIDTH, 3 * WIDTH)), "bqkv": rng.normal(0, 0.1, 3 * WIDTH)}
    table = rng.normal(0, 1, (VOCAB, WIDTH))
    weights["wte_t"] = table.T.copy()
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.INT64),
        helper.make_node("Gather", ["wte", "ids"], ["h"]),
        helper.make_node("Attention", ["h", "wqkv", "bqkv", "attention_mask", "past_0"], ["att", "present_0"],
                         domain="com.microsoft", num_heads=heads, unidirectional=1),
        helper.make_node("Add", ["h", "att"], ["h2"]),
        helper.make_node("MatMul", ["h2", "wte_t"], ["logits"]),
    ]  # fmt: skip
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT32, ["b", "s"]) for name in ("input_ids", "position_ids")
    ]
    inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["b", "t"]))
    inputs.append(helper.make_tensor_value_info("past_0", TensorProto.FLOAT, [2, "b", heads, "p", WIDTH // heads]))
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", VOCAB]),
        helper.make_tensor_value_info("present_0", TensorProto.FLOAT, [2, "b", heads, "t", WIDTH // heads]),
    ]
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    decoder = helper.make_graph(nodes, "gpt2 decoder", inputs, outputs, initializers)
    model = generation_model("GreedySearch")
    model.graph.node[0].attribute[0].g.CopyFrom(decoder)
    model.graph.node[0].input[0] = "prompt_ids"
    model.graph.node.insert(0, helper.make_node("Identity", ["prompt"], ["prompt_ids"]))  # a known op first
    model.graph.initializer.append(numpy_helper.from_array(table.astype(np.float32), "wte"))
    return model


def test_a_fused_attention_in_the_decoder_is_expanded_and_converted():
    """onnx's inference does not enter the decoder: its types come from inferring it as a model of its
    own, the main graph's shared table declared as its input (the Attention was left alone with
    "the types of h are unknown")."""
    model = _fused_greedy_search(np.random.default_rng(3))
    converted, report = rewrite_model(model, RewriteOptions(steps=16))
    assert [(s.graph, s.converted, s.role) for s in report.sites] == [("gpt2 decoder", True, "attention")]
    assert not report.attention_left_alone
    decoder = onnx.helper.get_attribute_value(converted.graph.node[1].attribute[0])
    assert not any(n.op_type == "Attention" for n in decoder.node)
    feeds = generate_feeds(make_session(model, SessionSpec(use_library=False)), batch=4, model=model)
    assert 4 <= feeds["prompt"].max() < VOCAB  # bounded through the Identity by the outer table
    before, after = _generate(model, feeds), _generate(converted, feeds)
    assert before.shape == (4, 32) and (after == before).mean() >= 0.9, (before, after)
    expanded, _ = rewrite_model(model, RewriteOptions(first=0))  # expanded, nothing converted
    assert (_generate(expanded, feeds) == before).all()


def test_a_decoder_is_inferred_as_a_model_of_its_own_with_the_outer_tensors_it_reads():
    from sit_onnx.graph.attention import _standalone

    model = _fused_greedy_search(np.random.default_rng(3))
    decoder = model.graph.node[1].attribute[0].g
    outer = {"wte": helper.make_tensor_type_proto(TensorProto.FLOAT, [VOCAB, WIDTH]), "h": decoder.input[0].type}
    alone = _standalone(model, decoder, outer)
    assert [i.name for i in alone.graph.input] == [*(i.name for i in decoder.input), "wte"]  # "h" is its own
    assert alone.opset_import == model.opset_import and alone.ir_version == model.ir_version
    onnx.checker.check_model(alone)
    untyped = _standalone(model, decoder, {})  # an outer tensor of unknown type is not declared
    assert [i.name for i in untyped.graph.input] == [i.name for i in decoder.input]


def test_a_decoder_may_read_what_the_outer_graph_computes():
    from sit_onnx.graph.validate import structural_complaint

    model = _fused_greedy_search(np.random.default_rng(3))
    decoder = model.graph.node[1].attribute[0].g
    cast = next(n for n in decoder.node if n.op_type == "Cast")
    cast.input[0] = "prompt_ids"  # the main graph's Identity writes it
    assert structural_complaint(model.graph) is None
    cast.input[0] = "nowhere"
    assert structural_complaint(model.graph).startswith("a node reads a tensor that nothing produces")


def test_a_site_left_unconverted_is_not_named_uncalibrated(tmp_path):
    model = generation_model("GreedySearch")
    source, data = tmp_path / "g.onnx", tmp_path / "d.npz"
    onnx.save(model, source)
    np.savez(data, **generate_feeds(make_session(model, SessionSpec(use_library=False)), batch=2, model=model))
    args = ["rewrite", str(source), "-o", str(tmp_path / "o.onnx"), "--calibrate", str(data), "--json"]
    assert json.loads(CliRunner().invoke(main, [*args, "--first", "0"]).output)["uncalibrated"] == []


def test_the_prompt_read_through_other_ops_is_the_longest_integer_input():
    """The ids with the longest last axis: not the first, nor the longest along another axis, nor
    a float input (Whisper's features) or a vector."""
    from sit_onnx.evaluate.generation_inputs import _longest_ids

    mask = np.ones((1, 9, 2), np.int64)  # longest along axis 1 and 2 from the end
    prompt = np.ones((1, 2, 7), np.int32)
    feeds = {"mask": mask, "prompt": prompt, "features": np.ones((1, 2, 80), np.float32), "v": np.ones(50, np.int64)}
    assert _longest_ids(feeds) is prompt
    assert _longest_ids({"features": feeds["features"], "v": feeds["v"]}) is None
