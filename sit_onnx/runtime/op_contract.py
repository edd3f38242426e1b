"""The op contract's attribute checks, in Python, with the kernels' words.

The kernels refuse a bad attribute when the session is created, naming the node and the attribute.
Without the library the function bodies run, and the only refusal they can make is a Reshape that
fails (or the Squeeze after it, when onnxruntime folds the check), which names neither. A model
headed for the function bodies is checked here first, so both paths say the same thing.
"""

from __future__ import annotations

import math

import onnx
from onnx import AttributeProto

from sit_onnx.domain import DOMAIN, MAX_STEPS, SPIKING_ACTIVATION, SPIKING_EXP, SPIKING_NORM, SPIKING_SOFTMAX
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.walk import graph_protos


def _attributes(node: onnx.NodeProto) -> dict[str, AttributeProto]:
    return {a.name: a for a in node.attribute}


def _int(attrs: dict, name: str, default: int) -> tuple[int | None, str]:
    found = attrs.get(name)
    if found is None:
        return default, ""
    return (found.i, "") if found.type == AttributeProto.INT else (None, f"{name} must be an int attribute")


def _float(attrs: dict, name: str, default: float | None) -> tuple[float | None, str]:
    found = attrs.get(name)
    if found is None:
        return default, "" if default is not None else f"missing float attribute {name}"
    return (found.f, "") if found.type == AttributeProto.FLOAT else (None, f"{name} must be a float attribute")


def _floats(attrs: dict, name: str) -> tuple[list[float], str]:
    found = attrs.get(name)
    if found is None:
        return [], f"missing attribute {name} (a list of floats)"
    if found.type != AttributeProto.FLOATS or not found.floats:
        return [], f"{name} must be a non-empty list of floats"
    return list(found.floats), ""


def _neuron_problem(attrs: dict) -> str:
    lists = {}
    for name in ("thresholds", "resets", "weights"):
        lists[name], why = _floats(attrs, name)
        if why:
            return why
    k = len(lists["thresholds"])
    if k > MAX_STEPS:
        return f"thresholds has {k} values; SpikingExp takes 1 to {MAX_STEPS}"
    if len(lists["resets"]) != k or len(lists["weights"]) != k:
        return (
            "thresholds, resets and weights must have equal lengths "
            f"(got {k}, {len(lists['resets'])}, {len(lists['weights'])})"
        )
    for t, step in enumerate(zip(*lists.values())):
        if not all(math.isfinite(v) for v in step):
            return f"step {t} holds a NaN or infinite value"
    return ""


def _norm_problem(attrs: dict) -> str:
    _, why = _int(attrs, "axis", -1)
    time_steps, why = (None, why) if why else _int(attrs, "time_steps", 0)
    if why:
        return why
    return f"time_steps must be >= 0, got {time_steps}" if time_steps < 0 else ""


def _flags_problem(attrs: dict) -> str:
    shift, why = _int(attrs, "shift", 1)
    sigmoid, why = (None, why) if why else _int(attrs, "sigmoid", 0)
    if why:
        return why
    return "" if shift in (0, 1) and sigmoid in (0, 1) else "shift and sigmoid must be 0 or 1"


def _activation_problem(attrs: dict) -> str:
    """In the kernel's order: low, high, bias, gate read, then tails, then their values."""
    values = {}
    for name, default in (("low", None), ("high", None), ("bias", 0.0)):
        values[name], why = _float(attrs, name, default)
        if why:
            return why
    gate, why = _int(attrs, "gate", 0)
    tails, why = (None, why) if why else _floats(attrs, "tails")
    if why:
        return why
    low, high = values["low"], values["high"]
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        return f"low and high must be finite with low < high (got {low:f}, {high:f})"
    if len(tails) != 4:
        return f"tails has {len(tails)} values; need 4"
    if not math.isfinite(values["bias"]):
        return "bias must be finite"
    if gate not in (0, 1):
        return f"gate must be 0 or 1, got {gate}"
    return "" if all(math.isfinite(v) for v in tails) else "tails holds a NaN or infinite value"


def contract_problem(node: onnx.NodeProto) -> str:
    """Why the kernels would refuse this ai.sit node's attributes ("" if they would not; an axis is
    checked against the input's rank at run time, as the bodies do). Attributes a function passes
    down by reference are its caller's to check."""
    if node.domain != DOMAIN or any(a.ref_attr_name for a in node.attribute):
        return ""
    attrs = _attributes(node)
    checks = {
        SPIKING_EXP: (_neuron_problem,),
        SPIKING_NORM: (_norm_problem,),
        SPIKING_SOFTMAX: (_neuron_problem, _norm_problem, _flags_problem),
        SPIKING_ACTIVATION: (_neuron_problem, _activation_problem),
    }.get(node.op_type, ())
    return next((why for why in (check(attrs) for check in checks) if why), "")


def first_contract_problem(model: onnx.ModelProto) -> str:
    """'<op> node '<name>': why' for the first ai.sit node, in any graph or local function, whose
    attributes the kernels would refuse; "" when there is none."""
    graphs = [*graph_protos(model.graph), *(f for f in model.functions if f.domain != DOMAIN)]
    for graph in graphs:
        for node in graph.node:
            why = contract_problem(node)
            if why:
                return f"{node.op_type} node '{node.name}': {why}"
    return ""


def check_contract(model: onnx.ModelProto, label: str) -> None:
    """SitOnnxError '<label>: <op> node '<name>': why' for a node the kernels would refuse."""
    problem = first_contract_problem(model)
    if problem:
        raise SitOnnxError(f"{label}: {problem}")
