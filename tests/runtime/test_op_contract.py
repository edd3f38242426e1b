"""op_contract.py says in Python, with the kernels' own words, why the kernels refuse a node: the
function bodies can only fail a Reshape, so a model run without the library is checked first."""

import random

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from sit_onnx.cli import main
from sit_onnx.domain import DOMAIN
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime.op_contract import contract_problem, first_contract_problem
from sit_onnx.runtime.session import SessionSpec, make_session
from tests.runtime.test_fuzz import _parity_bases, _run, changed_attributes

CASES = [  # (op, attributes changed or None to drop)
    ("SpikingExp", {"weights": [1.0]}),
    ("SpikingExp", {"thresholds": [0.0, float("nan"), 1.0]}),
    ("SpikingExp", {"thresholds": [0.0] * 65, "resets": [1.0] * 65, "weights": [1.0] * 65}),
    ("SpikingExp", {"resets": None}),
    ("SpikingExp", {"resets": "1.0"}),
    ("SpikingExp", {"weights": [1, 2, 3]}),  # ints: onnxruntime reads them as no floats
    ("SpikingNorm", {"time_steps": -1}),
    ("SpikingNorm", {"time_steps": 2.5}),
    ("SpikingNorm", {"axis": "last"}),
    ("SpikingSoftmax", {"shift": 2}),
    ("SpikingSoftmax", {"sigmoid": -1}),
    ("SpikingSoftmax", {"time_steps": -4}),
    ("SpikingSoftmax", {"shift": 1.0}),
    ("SpikingActivation", {"low": 2.0}),
    ("SpikingActivation", {"low": 1.0}),  # low == high
    ("SpikingActivation", {"high": float("inf")}),
    ("SpikingActivation", {"bias": float("nan")}),
    ("SpikingActivation", {"tails": [0.0, 1.0]}),
    ("SpikingActivation", {"tails": [0.0, float("inf"), 0.0, 1.0]}),
    ("SpikingActivation", {"gate": 3}),
    ("SpikingActivation", {"low": None}),
    ("SpikingActivation", {"low": 1}),
]


def _node(op, changes, name="n"):
    attrs = {**_parity_bases()[op], **changes}
    given = {k: v for k, v in attrs.items() if v is not None}
    return helper.make_node(op, ["x"], ["y"], name=name, domain=DOMAIN, **given)


@pytest.mark.parametrize("op, changes", CASES, ids=[f"{op}-{sorted(c)}" for op, c in CASES])
def test_the_reason_is_the_kernels_own_words(op, changes):
    node = _node(op, changes)
    why = contract_problem(node)
    assert why
    with pytest.raises(Exception) as refused:
        _run(node, np.ones((2, 3, 4), np.float32), 3, library=True)
    assert why in str(refused.value)


@pytest.mark.parametrize("op", sorted(_parity_bases()))
def test_a_valid_node_and_another_domains_node_pass(op):
    assert contract_problem(_node(op, {})) == ""
    foreign = _node(op, {"shift": 7})
    foreign.domain = "com.example"
    assert contract_problem(foreign) == ""


VALID_EDGES = [  # (op, attributes changed or None to drop): each the kernels take
    ("SpikingExp", {"thresholds": [0.0] * 64, "resets": [1.0] * 64, "weights": [1.0] * 64}),  # K = MAX_STEPS
    ("SpikingSoftmax", {"shift": None, "sigmoid": None, "time_steps": None, "axis": None}),  # the defaults
    ("SpikingSoftmax", {"shift": 0, "sigmoid": 1, "time_steps": 8}),
    ("SpikingActivation", {"gate": 1}),
    ("SpikingActivation", {"gate": None, "bias": None}),
]


@pytest.mark.parametrize("op, changes", VALID_EDGES, ids=[f"{op}-{sorted(c)}" for op, c in VALID_EDGES])
def test_edges_the_kernels_take_pass(op, changes):
    node = _node(op, changes)
    assert contract_problem(node) == ""
    _run(node, np.ones((2, 3, 4), np.float32), 3, library=True)  # and the kernels do take them


def test_an_empty_list_and_an_op_the_contract_does_not_name():
    empty = _node("SpikingExp", {})
    next(a for a in empty.attribute if a.name == "thresholds").ClearField("floats")
    assert contract_problem(empty) == "thresholds must be a non-empty list of floats"
    assert contract_problem(_node("SpikingExp", {}, name="x")) == ""
    unknown = helper.make_node("SpikingFoo", ["x"], ["y"], domain=DOMAIN, shift=9)
    assert contract_problem(unknown) == ""  # onnxruntime names an op no library defines


def test_a_node_passing_its_callers_attributes_down_is_the_callers_to_check():
    """Inside another domain's local function a spiking op may take its attributes by reference
    (empty of values here): the call site holds them, and the kernels see them resolved."""
    forwarded = helper.make_node("SpikingSoftmax", ["x"], ["y"], name="forwarded", domain=DOMAIN)
    for name, kind in (("thresholds", 6), ("resets", 6), ("weights", 6), ("shift", 2)):
        forwarded.attribute.append(onnx.AttributeProto(name=name, ref_attr_name=name, type=kind))
    assert contract_problem(forwarded) == ""
    block = helper.make_function("custom.block", "Block", ["x"], ["y"], [forwarded],
                                 [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)],
                                 attributes=["thresholds", "resets", "weights", "shift"])  # fmt: skip
    model = helper.make_model(helper.make_graph([], "g", [], []), functions=[block])
    assert first_contract_problem(model) == ""


def test_a_bad_node_inside_a_local_function_is_found_and_ours_are_not_read():
    """A model-local function of another domain may hold spiking ops with their own attributes;
    our functions' nodes take their attributes from the caller, by reference."""
    new, _ = rewrite_model(onnx.load("models/vit_digits.onnx"), RewriteOptions())
    inner = _node("SpikingSoftmax", {"sigmoid": 3}, name="inside")
    block = helper.make_function("custom.block", "Block", ["x"], ["y"], [inner],
                                 [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])  # fmt: skip
    new.functions.append(block)
    assert first_contract_problem(new) == "SpikingSoftmax node 'inside': shift and sigmoid must be 0 or 1"


def test_every_op_a_rewrite_writes_passes():
    model = onnx.load("models/vit_digits.onnx")
    for options in (RewriteOptions(), RewriteOptions(fuse=False), RewriteOptions(activations=("gelu",))):
        new, _ = rewrite_model(model, options)
        assert first_contract_problem(new) == ""  # the functions' nodes pass attributes by reference


def _bad_model(tmp_path, where="main"):
    new, _ = rewrite_model(onnx.load("models/vit_digits.onnx"), RewriteOptions())
    graph = new.graph
    node = next(n for n in graph.node if n.op_type == "SpikingSoftmax")
    next(a for a in node.attribute if a.name == "sigmoid").i = 5
    if where == "branch":  # the node moved into an If's branch
        graph.node.remove(node)
        branch = helper.make_graph([node], "then", [], [helper.make_tensor_value_info(node.output[0], 1, None)])
        flag = helper.make_tensor("flag", onnx.TensorProto.BOOL, [], [True])
        graph.initializer.append(flag)
        index = next(i for i, n in enumerate(graph.node) if node.output[0] in n.input)
        graph.node.insert(index, helper.make_node("If", ["flag"], [node.output[0]], then_branch=branch,
                                                  else_branch=branch))  # fmt: skip
    path = tmp_path / f"bad_{where}.onnx"
    onnx.save(new, str(path))
    return path, node.name


@pytest.mark.parametrize("where", ["main", "branch"])
def test_without_the_library_a_bad_attribute_is_named_in_one_line(tmp_path, where):
    path, name = _bad_model(tmp_path, where)
    expected = f"{path}: SpikingSoftmax node '{name}': shift and sigmoid must be 0 or 1"
    with pytest.raises(SitOnnxError) as refused:
        make_session(path, SessionSpec(use_library=False))
    assert str(refused.value) == expected
    result = CliRunner().invoke(main, ["run", str(path), "--no-library"])
    assert result.exit_code == 1 and result.stderr.strip() == f"Error: {expected}"


def test_without_the_library_a_model_in_memory_is_checked_too(tmp_path):
    path, name = _bad_model(tmp_path)
    with pytest.raises(SitOnnxError, match=f"^model: SpikingSoftmax node '{name}'"):
        make_session(onnx.load(str(path)), SessionSpec(use_library=False))


def test_an_unreadable_file_is_left_to_the_usual_diagnosis(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07not a model")
    with pytest.raises(SitOnnxError, match="junk.onnx: not an ONNX model"):
        make_session(path, SessionSpec(use_library=False))


def test_the_python_check_refuses_exactly_what_the_kernels_refuse_when_created():
    """Seeded, as the kernel/body parity fuzz: a changed node is refused here where the kernels
    refuse it at session creation. The axis is the one thing left to run time (the rank is known
    there), by the kernels and the bodies alike."""
    bases, rng, disagreements = _parity_bases(), random.Random(1), []
    for case in range(400):
        op, attrs = changed_attributes(bases, rng)
        node = helper.make_node(op, ["x"], ["y"], name="n", domain=DOMAIN, **attrs)
        try:
            _run(node, np.ones((2, 3, 4), np.float32), 3, library=True)
            kernel = ""
        except Exception as error:  # noqa: BLE001 - a refusal, whatever onnxruntime raises
            kernel = str(error)
        if "out of range" in kernel:
            continue  # the axis, at run time
        if bool(kernel) != bool(contract_problem(node)) or (kernel and contract_problem(node) not in kernel):
            disagreements.append((case, op, contract_problem(node), kernel[-120:]))
    assert disagreements == []
