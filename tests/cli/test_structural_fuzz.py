"""A seeded structural fuzzer: valid models (ONNX's softmax and attention node tests, onnxruntime's
fused attention ops, an optimum merged decoder) with an attribute, a type, a dim, an opset, a name or
a node changed, through `sit-onnx rewrite`; and the activation forms (ReLU6 HardSigmoid/HardSwish, GELU's
chains, a tf2onnx Keras block) through `rewrite --activations`. Whatever the change, the command ends in a converted
model or one line saying why (exit 1), never "internal error", never an output left on failure; a
converted model loads in onnxruntime wherever its source runs. Converted models, as written or changed,
go through `run`, `energy`, `compare` and `rewrite` again the same way. (A longer campaign of the same
mutations found the failures `tests/graph/test_malformed_sources.py` pins.)"""

import copy
import random
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import AttributeProto, helper

from sit_onnx.cli import main
from sit_onnx.graph.walk import graph_protos
from sit_onnx.neurons.activation import SITE_FUNCTIONS
from tests.graph.test_attention import _attention_model, _fused_attention_model, _gqa_cache_model, _gqa_model
from tests.helpers import optimized_like_model

CASES = 150
ELEMENT_TYPES = [0, 1, 2, 3, 6, 7, 9, 10, 11, 16, 21]


def _seeds() -> list[onnx.ModelProto]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = [c for c in collect_testcases(None) if c.name.startswith(("test_softmax", "test_attention_4d_"))]
    models = [c.model for c in cases[::4]]
    rng = np.random.default_rng(0)
    models += [_attention_model(23, three_d=True)[0], _fused_attention_model(), _gqa_model(rng)[0]]
    models.append(_gqa_cache_model(rng, 2, 1, 3)[0])
    models.append(optimized_like_model())
    models.append(onnx.load("tests/data/optimum_t5_decoder_merged.onnx"))
    return models


def _attribute(node, rng):
    if not node.attribute:
        node.attribute.append(helper.make_attribute(rng.choice(["axis", "num_heads", "scale"]), rng.choice([0, -9, 5])))
        return
    found = rng.choice(list(node.attribute))
    if found.type == AttributeProto.INT:
        found.i = rng.choice([-100, -1, 0, 1, 3, 7, 2**40])
    elif found.type == AttributeProto.FLOAT:
        found.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0])
    elif found.type == AttributeProto.INTS:
        del found.ints[:]
        found.ints.extend(rng.choice([[], [0], [-1, 5]]))


RETYPED = [b"\xff\xfe", "text", 3, 2.5, [1, 2], [0.5], ["a"]]


def _retype(node, rng):
    """An attribute (one the node has, or one attention and activation ops read) given another type,
    or as an empty list: a Softmax axis of floats, a head count of bytes (each once an internal error)."""
    names = [a.name for a in node.attribute] or ["axis", "num_heads", "alpha", "perm", "to"]
    name = rng.choice(names)
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)
    if rng.random() < 0.2:
        kind = rng.choice([AttributeProto.INTS, AttributeProto.FLOATS, AttributeProto.STRINGS])
        node.attribute.append(helper.make_attribute(name, [], attr_type=kind))
    else:
        node.attribute.append(helper.make_attribute(name, rng.choice(RETYPED)))


def _mutate(model: onnx.ModelProto, rng: random.Random) -> None:
    graph, nodes = model.graph, list(model.graph.node)
    if not nodes:
        return
    node = rng.choice(nodes)
    tensor_type = rng.choice(list(graph.input) + list(graph.output)).type.tensor_type
    kind = rng.randrange(12)
    if kind == 0:
        _attribute(node, rng)
    elif kind == 1:
        tensor_type.elem_type = rng.choice(ELEMENT_TYPES)
    elif kind == 2 and tensor_type.shape.dim:
        dim = rng.choice(list(tensor_type.shape.dim))
        dim.dim_value = rng.choice([0, 1, 7])
    elif kind == 3:
        graph.node.remove(node)
    elif kind == 4 and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(["", "nowhere", node.output[0]])
    elif kind == 5:
        model.opset_import[0].version = rng.choice([1, 10, 12, 99])
    elif kind == 6:
        node.op_type = rng.choice(["Softmax", "Exp", "Attention", "Foo", "MatMul"])
    elif kind == 7:
        node.domain = rng.choice(["com.microsoft", "ai.onnx", "ai.onnx.preview"])
    elif kind == 8:
        node.output[0] = graph.input[0].name
    elif kind == 9:
        graph.node.append(copy.deepcopy(node))
    elif kind == 11:
        _retype(node, rng)
    else:
        model.ir_version = rng.choice([3, 7, 11])


def _runs(data: bytes) -> bool:
    """Whether onnxruntime loads the source and runs it on zeros of its declared shapes."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in session.get_inputs():
            dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}[i.type]
            feeds[i.name] = np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype)
        session.run(None, feeds)
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def seeds():
    return _seeds()


@pytest.mark.parametrize("block", range(5))
def test_rewrite_of_a_mutated_model_converts_or_says_why_in_one_line(seeds, block, tmp_path):
    runner = CliRunner()
    flags = [[], ["--steps", "8"], ["--no-shift"], ["--chain"], ["--sigmoid"], ["--strict"], ["--inline"]]
    for case in range(block * CASES // 5, (block + 1) * CASES // 5):
        rng = random.Random(case)
        model = copy.deepcopy(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            _mutate(model, rng)
        data = model.SerializeToString()
        source, out = tmp_path / f"{case}.onnx", tmp_path / f"{case}.sit.onnx"
        source.write_bytes(data)
        result = runner.invoke(main, ["rewrite", str(source), "-o", str(out), *rng.choice(flags)])
        said = result.stderr.strip()
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), case
        assert "internal error" not in said, (case, said)
        if result.exit_code == 0:
            assert out.exists(), case
            if _runs(data):
                ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()  # loads
        else:
            assert result.exit_code == 1 and not out.exists(), (case, result.exit_code)
            assert said.startswith("Error: ") and "\n" not in said, (case, said)


ACTIVATION_CASES = 600
ACTIVATIONS = ",".join(SITE_FUNCTIONS)


@pytest.fixture(scope="module")
def activation_seeds():
    from tests.graph import test_activation_rewrite as forms
    from tests.graph import test_relu6_activations as relu6

    models = [
        relu6._model(build(), relu6.BOUNDS + [relu6._const("sixth", 1 / 6)]) for build, _, _ in relu6.FORMS.values()
    ]
    models += [forms._model(*forms.FORMS[name][0]()) for name in ("Erf form (torch)", "tanh form", "SiLU")]
    return models + [onnx.load("tests/data/tf2onnx_keras_block.onnx")]


def test_activation_rewrite_of_a_mutated_model_converts_or_says_why_in_one_line(activation_seeds, tmp_path):
    runner = CliRunner()
    flags = [[], ["--activation-form", "gated"], ["--inline"], ["--activation-steps", "8"]]
    for case in range(ACTIVATION_CASES):
        rng = random.Random(10_000 + case)
        model = copy.deepcopy(rng.choice(activation_seeds))
        for _ in range(rng.randint(1, 3)):
            _mutate(model, rng)
        source, out = tmp_path / f"{case}.onnx", tmp_path / f"{case}.sit.onnx"
        source.write_bytes(model.SerializeToString())
        asked = rng.choice([ACTIVATIONS, "hardswish", "hardsigmoid", "gelu"])
        result = runner.invoke(
            main, ["rewrite", str(source), "-o", str(out), "--activations", asked, *rng.choice(flags)]
        )
        said = result.stderr.strip()
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), case
        assert "internal error" not in said, (case, said)
        if result.exit_code != 0:
            assert result.exit_code == 1 and not out.exists(), (case, result.exit_code)
            assert said.startswith("Error: ") and "\n" not in said, (case, said)


CONVERTED_CASES = 150
COMMANDS = [
    ["run"],
    ["run", "--no-library"],
    ["run", "--json"],
    ["run", "--verify-kernels"],
    ["energy"],
    ["compare"],
    ["rewrite"],
]


@pytest.fixture(scope="module")
def converted_seeds(seeds, tmp_path_factory):
    """Every other seed and the merged decoder, converted (softmax; the chain for one in three): the
    source's path and the converted model."""
    folder, pairs = tmp_path_factory.mktemp("converted"), []
    for i, model in enumerate([*seeds[:-1:2], seeds[-1]]):
        source, out = folder / f"{i}.onnx", folder / f"{i}.sit.onnx"
        source.write_bytes(model.SerializeToString())
        flags = ["--chain"] if i % 3 == 2 else []
        assert CliRunner().invoke(main, ["rewrite", str(source), "-o", str(out), *flags]).exit_code == 0, i
        pairs.append((source, onnx.load(str(out))))
    return pairs


def _mutate_spiking(model: onnx.ModelProto, rng: random.Random) -> None:
    """One change to what the conversion wrote (in any graph, If branches too): a step value or an
    int attribute, an attribute dropped, an op renamed or moved to another domain, the functions or
    our opset import gone."""
    ours = [n for graph in graph_protos(model.graph) for n in graph.node if n.domain == "ai.sit"]
    kind = rng.randrange(5)
    if kind == 0 or not ours:
        if rng.random() < 0.5:
            del model.functions[:]
        else:
            kept = [o for o in model.opset_import if o.domain != "ai.sit"]
            del model.opset_import[:]
            model.opset_import.extend(kept)
        return
    node = rng.choice(ours)
    found = rng.choice(list(node.attribute)) if node.attribute else None
    if kind == 1 and found is not None and found.floats:
        values = list(found.floats)
        values[rng.randrange(len(values))] = rng.choice([float("nan"), 1e38, 0.0, 100.0])
        del found.floats[:]
        found.floats.extend(values[: -1 if rng.random() < 0.3 else None])
    elif kind == 1 and found is not None:
        found.i = rng.choice([-9, -1, 2, 5, 2**40])
    elif kind == 2 and found is not None:
        node.attribute.remove(found)
    elif kind == 3:
        node.op_type = rng.choice(["SpikingExp", "SpikingNorm", "SpikingSoftmax", "SpikingActivation", "SpikingFoo"])
    else:
        node.domain = rng.choice(["", "com.microsoft"])


def test_commands_on_a_mutated_converted_model_run_or_say_why_in_one_line(converted_seeds, tmp_path):
    """A converted model, as written or changed by hand or by another tool: `run` (kernels or
    function bodies), `energy`, `compare` against its source and `rewrite` again end in a result or
    one line saying why, exit 1, never an internal error (the merged decoder, given to `energy` or
    `rewrite`, ended in a RecursionError)."""
    runner = CliRunner()
    for case in range(CONVERTED_CASES):
        rng = random.Random(20_000 + case)
        source, model = converted_seeds[case % len(converted_seeds)]
        model = copy.deepcopy(model)
        for _ in range(rng.randint(0, 2)):  # none: the converted model as it was written
            (_mutate_spiking if rng.random() < 0.6 else _mutate)(model, rng)
        path = tmp_path / f"{case}.sit.onnx"
        path.write_bytes(model.SerializeToString())
        command = rng.choice(COMMANDS)
        args = [command[0], *([str(source)] if command[0] == "compare" else []), str(path), *command[1:]]
        again = tmp_path / f"{case}.again.onnx"
        args += ["-o", str(again)] if command[0] == "rewrite" else []
        result = runner.invoke(main, args)
        said = result.stderr.strip()
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), case
        assert "internal error" not in said and result.exit_code in (0, 1), (case, args, said)
        if result.exit_code == 1 and not (command[0] == "compare" and not said):  # compare: 1 = FAILED, reported
            assert said.startswith("Error: ") and "\n" not in said, (case, said)
            assert not again.exists(), case
