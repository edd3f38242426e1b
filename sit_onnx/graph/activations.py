"""Activation sites (GELU, SiLU, Sigmoid, Tanh, HardSigmoid, HardSwish) in every form exporters
write, and their replacement by one SpikingActivation node each.

Forms matched: ONNX `Gelu` (opset 20, both approximations); onnxruntime's `Gelu`, `FastGelu`
and `BiasGelu` (com.microsoft, the bias added first) and its `QuickGelu`; the Erf form `x*0.5*(1+erf(x/sqrt2))`
and the tanh form `0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3)))` in any association of the
products (checked by evaluating the matched nodes, not by their shapes alone); `Sigmoid`;
SiLU as `Mul(x, Sigmoid(x))`, and Swish-beta `Mul(x, Sigmoid(beta*x))` (CLIP's QuickGELU, beta
1.702) and ONNX's `Swish` (opset 24) with SiLU's set rescaled; `Tanh`; `HardSigmoid` (torch's,
alpha 1/6; any other alpha > 0 and beta, ONNX's default 0.2 and Keras 2's, as torch's of
6 alpha x + 6 beta - 3) and `HardSwish`, also as `Mul(x, HardSigmoid(x))` (beta 0.5: HardSwish's
set rescaled), and both through ReLU6 as Paddle,
TensorFlow and older exporters write them (`Clip(x + 3, 0, 6) / 6`, times x before or after the
division; the clamp also as `Min(Max(x + 3, 0), 6)`, `Max(Min(x + 3, 6), 0)` or `Min(Relu(x + 3), 6)`,
as `jnp.minimum(jnp.maximum(...))` and hand-written ReLU6s export; checked by evaluating the
nodes); HardSigmoid's own body, a clamp of alpha x + beta to [0, 1] (Keras 2's hard_sigmoid, the
op inlined), and x times it. Constants may come through CastLike and an Add may be a two-input Sum (ONNX's own
function bodies). What is not converted says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs
from onnx import helper

from sit_onnx.domain import DOMAIN, SPIKING_ACTIVATION
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.functions import CASTLIKE_OPSET
from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS, constant_value
from sit_onnx.graph.types import known_dtype, traced_dtype
from sit_onnx.graph.walk import graph_label, walk_graphs
from sit_onnx.neurons.activation import GATE_FUNCTIONS, SITE_FUNCTIONS, ActivationParams, erf

MS_DOMAIN = "com.microsoft"
MAX_CHAIN_NODES = 16  # an Erf or tanh GELU is 5-10 nodes; a longer walk has left the activation
CHAIN_CHECK_POINTS = np.linspace(-6.0, 6.0, 241)
CHAIN_TOLERANCE = 2e-3  # the tanh form is within 5e-4 of exact GELU; anything else is another function
SWISH_BETAS = (1e-2, 1e2)  # beta of x * Sigmoid(beta x) converted; beyond, a rescaled set leaves float32
QUICK_GELU = 1.702  # x * Sigmoid(1.702 x): CLIP's GELU approximation (off by up to 0.02), a Swish-beta


@dataclass
class ActivationSite:
    """One activation in the graph: its input, output and the nodes that make it up."""

    name: str
    graph: gs.Graph = field(repr=False)
    function: str
    form: str
    x: gs.Tensor = field(repr=False)
    output: gs.Tensor = field(repr=False)
    nodes: list = field(default_factory=list, repr=False)
    bias: gs.Tensor | None = field(default=None, repr=False)  # added to x first (BiasGelu, FastGelu)
    dtype: np.dtype | None = field(default=None, repr=False)  # float32 or float16, once checked
    scale: float = 1.0  # the function is f(scale x) / scale (Swish-beta: SiLU's set rescaled)
    affine: tuple[float, float] | None = None  # (gain, shift): the op reads gain x + shift (HardSigmoid's alpha, beta)


@dataclass(frozen=True)
class ActivationMiss:
    """A node that starts an activation the pass was asked for but left alone, and why."""

    name: str
    graph: str
    function: str
    reason: str


class NoSite(Exception):
    """Why a node that starts an activation's form is no site."""


def _sole_consumer(graph: gs.Graph, tensor: gs.Tensor, op: str) -> gs.Node:
    """The one node reading `tensor`, an `op` (an Add may also be a two-input Sum, as ONNX's own
    Gelu body writes it)."""
    if tensor in graph.outputs:
        raise NoSite(f"{tensor.name!r} is a graph output")
    consumers = list(tensor.outputs)
    ops = (op, "Sum") if op == "Add" else (op,)
    if (
        len(consumers) != 1
        or consumers[0].op not in ops
        or (consumers[0].op == "Sum" and len(consumers[0].inputs) != 2)
    ):
        found = ", ".join(c.op for c in consumers) or "nothing"
        raise NoSite(f"{tensor.name!r} feeds {found}, not one {op}")
    return consumers[0]


def _other_input(node: gs.Node, tensor: gs.Tensor) -> gs.Tensor:
    others = [t for t in node.inputs if t is not tensor]
    if len(node.inputs) != 2 or len(others) != 1:
        raise NoSite(f"{node.op} {node.name!r} does not take {tensor.name!r} once beside one other input")
    return others[0]


def _is_constant(tensor: gs.Tensor, value: float) -> bool:
    found = constant_value(tensor)
    return found is not None and found.size == 1 and math.isclose(float(found.reshape(-1)[0]), value, rel_tol=1e-3)


def _gelu_ends(graph: gs.Graph, anchor: gs.Node) -> tuple[gs.Tensor, gs.Tensor]:
    """From the Erf or Tanh of a GELU: (x, output), through 1 + anchor, times x, times 0.5 in any order."""
    one_plus = _sole_consumer(graph, anchor.outputs[0], "Add")
    if not _is_constant(_other_input(one_plus, anchor.outputs[0]), 1.0):
        raise NoSite("the Add after it does not add 1")
    first = _sole_consumer(graph, one_plus.outputs[0], "Mul")
    other = _other_input(first, one_plus.outputs[0])
    if _is_constant(other, 0.5):  # ((1 + erf) * 0.5) * x
        second = _sole_consumer(graph, first.outputs[0], "Mul")
        return _other_input(second, first.outputs[0]), second.outputs[0]
    half_x = other.inputs[0] if other.inputs else None
    if half_x is not None and half_x.op == "Mul" and len(half_x.inputs) == 2:  # (x * 0.5) * (1 + erf)
        a, b = half_x.inputs
        if _is_constant(b, 0.5):
            return a, first.outputs[0]
        if _is_constant(a, 0.5):
            return b, first.outputs[0]
    second = _sole_consumer(graph, first.outputs[0], "Mul")  # (x * (1 + erf)) * 0.5
    if not _is_constant(_other_input(second, first.outputs[0]), 0.5):
        raise NoSite("no factor 0.5 after the products")
    return other, second.outputs[0]


def _chain(graph: gs.Graph, x: gs.Tensor, output: gs.Tensor) -> list[gs.Node]:
    """The nodes between x and output, in graph order; each of their values used inside only."""
    nodes, stack = [], [output]
    while stack:
        tensor = stack.pop()
        if tensor is x or not tensor.name or constant_value(tensor) is not None:
            continue  # x, an omitted optional input (Clip's bounds), or a constant
        if not tensor.inputs:
            raise NoSite(f"it also depends on {tensor.name!r}, not only on {x.name!r}")
        producer = tensor.inputs[0]
        if producer not in nodes:
            nodes.append(producer)
            stack.extend(producer.inputs)
        if len(nodes) > MAX_CHAIN_NODES:
            raise NoSite(f"more than {MAX_CHAIN_NODES} nodes between {x.name!r} and {output.name!r}")
    for node in nodes:
        for out in node.outputs:
            if out is output:
                continue
            if out in graph.outputs or any(c not in nodes for c in out.outputs):
                raise NoSite(f"its intermediate {out.name!r} is used outside the activation")
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    return sorted(nodes, key=lambda n: order[id(n)])


def _clip(a: np.ndarray, low=None, high=None) -> np.ndarray:
    """Clip with either bound maybe omitted (None). Bounds are inputs: a model below opset 11, where
    they are attributes, is upgraded before its activations are matched."""
    a = a if low is None else np.maximum(a, low)
    return a if high is None else np.minimum(a, high)


_EVAL = {
    "Add": lambda a, b: a + b,
    "Sum": lambda *terms: sum(terms),
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b,
    "Pow": lambda a, b: np.power(a, b),
    "Erf": erf,
    "Tanh": np.tanh,
    "Sqrt": np.sqrt,
    "Identity": lambda a: a,
    "Clip": _clip,
    "Max": lambda *terms: np.maximum.reduce(np.broadcast_arrays(*terms)),
    "Min": lambda *terms: np.minimum.reduce(np.broadcast_arrays(*terms)),
    "Relu": lambda a: np.maximum(a, 0.0),
}


def _evaluate(nodes: list[gs.Node], x: gs.Tensor, output: gs.Tensor, points=CHAIN_CHECK_POINTS) -> np.ndarray:
    """The chain's output at `points`, in float64 (only the elementwise ops of the forms matched)."""
    values = {id(x): points}
    for node in nodes:
        if node.op not in _EVAL or (node.domain or "") not in DEFAULT_DOMAINS:
            raise NoSite(f"{node.op} {node.name!r} in the chain is not an elementwise op of the activations' forms")
        args = []
        for tensor in node.inputs:
            known = values.get(id(tensor))
            if known is None and not tensor.name:  # an omitted input: only Clip's bounds are optional
                if node.op != "Clip":
                    raise NoSite(f"{node.op} {node.name!r} in the chain lacks an input")
                args.append(None)
                continue
            args.append(known if known is not None else _scalar(tensor, x))
        values[id(node.outputs[0])] = _EVAL[node.op](*args)
    return np.broadcast_to(values[id(output)], points.shape)


def _scalar(constant: gs.Tensor, x: gs.Tensor) -> np.float64:
    """A chain's constant as one number. Of several values it is no function of each element alone;
    of shape [1, 1, 1] (as onnxslim folds them) it is one only where x has at least that rank, else
    it raises the output's rank, which a neuron on x does not (an internal error before both)."""
    value = np.asarray(constant_value(constant))
    if value.size != 1:
        raise NoSite(f"its constant {constant.name!r} holds {value.size} values, not one")
    _keeps_rank(constant, value, x)
    return np.float64(value.reshape(()))


def _keeps_rank(constant: gs.Tensor, value: np.ndarray, x: gs.Tensor) -> None:
    """Raise NoSite where a one-number constant of shape [1, 1, ...] may give x * value (or +) a
    higher rank than x's: a neuron on x would then change the output's shape."""
    rank = len(x.shape) if x.shape is not None else None
    if value.ndim and (rank is None or rank < value.ndim):
        raise NoSite(
            f"its constant {constant.name!r} of shape {list(value.shape)} may raise the rank of {x.name!r} "
            f"({'unknown' if rank is None else rank})"
        )


def _gelu_chain(graph: gs.Graph, anchor: gs.Node, form: str) -> ActivationSite:
    x, output = _gelu_ends(graph, anchor)
    nodes = _chain(graph, x, output)  # holds the anchor: the output is reached from it through one_plus
    error = np.max(np.abs(_evaluate(nodes, x, output) - SITE_FUNCTIONS["gelu"].exact(CHAIN_CHECK_POINTS)))
    if not error <= CHAIN_TOLERANCE:
        raise NoSite(f"the nodes around it compute no GELU (off by {error:.3g} on [-6, 6])")
    return ActivationSite(anchor.name, graph, "gelu", form, x, output, nodes)


def _gelu_op(graph: gs.Graph, node: gs.Node) -> ActivationSite:
    if (node.domain or "") in DEFAULT_DOMAINS:
        form = f"Gelu (approximate={node.attrs.get('approximate', 'none')})"
        return ActivationSite(node.name, graph, "gelu", form, node.inputs[0], node.outputs[0], [node])
    bias = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1].name else None
    if node.op == "BiasGelu" and bias is None:
        raise NoSite("BiasGelu without its bias input")
    return ActivationSite(
        node.name, graph, "gelu", f"{MS_DOMAIN}::{node.op}", node.inputs[0], node.outputs[0], [node], bias
    )


GATES = {"Sigmoid": ("sigmoid", "silu", "SiLU"), "HardSigmoid": ("hardsigmoid", "hardswish", "HardSwish")}


def _scaled(graph: gs.Graph, tensor: gs.Tensor) -> tuple[gs.Tensor, float, list[gs.Node]]:
    """`tensor` as beta * x: (x, beta, [the Mul, where nothing else reads it]); else (tensor, 1, [])."""
    mul = tensor.inputs[0] if tensor.inputs else None
    if mul is None or mul.op != "Mul" or (mul.domain or "") not in DEFAULT_DOMAINS or len(mul.inputs) != 2:
        return tensor, 1.0, []
    for x, factor in (mul.inputs, mul.inputs[::-1]):
        beta = constant_value(factor)
        if beta is not None and beta.size == 1 and constant_value(x) is None:
            _keeps_rank(factor, beta, x)
            private = len(tensor.outputs) == 1 and tensor not in graph.outputs
            return x, float(beta.reshape(-1)[0]), [mul] if private else []
    return tensor, 1.0, []


def _in_window(beta: float) -> bool:
    """beta within SWISH_BETAS as float32 sees them (a model's 0.01 is float32's 0.0099999998)."""
    lo, hi = (np.float32(v) for v in SWISH_BETAS)
    return bool(lo <= np.float32(beta) <= hi)


def _swish(graph: gs.Graph, sigmoid: gs.Node, mul: gs.Node) -> ActivationSite | None:
    """x * Sigmoid(beta x) for a constant beta > 0: SiLU's set rescaled; None if `mul` is not that."""
    x, beta, scale_nodes = _scaled(graph, sigmoid.inputs[0])
    if x is sigmoid.inputs[0] or _other_input(mul, sigmoid.outputs[0]) is not x or not _in_window(beta):
        return None
    form = f"x * Sigmoid({beta:.4g} x)" + (" (QuickGELU)" if math.isclose(beta, QUICK_GELU, rel_tol=1e-3) else "")
    nodes = [*scale_nodes, sigmoid, mul]
    return ActivationSite(mul.name or sigmoid.name, graph, "silu", form, x, mul.outputs[0], nodes, scale=beta)


def _gate(graph: gs.Graph, node: gs.Node, wanted: set[str]) -> ActivationSite:
    """A Sigmoid or HardSigmoid: the gate of x * gate(x) (SiLU, HardSwish; x * Sigmoid(beta x) too)
    when that is asked for and the gate feeds nothing else, else the gate itself."""
    gate, product, label = GATES[node.op]
    x, s = node.inputs[0], node.outputs[0]
    consumers = list(s.outputs)
    if product in wanted and len(consumers) == 1 and consumers[0].op == "Mul" and s not in graph.outputs:
        mul = consumers[0]
        if len(mul.inputs) == 2 and _other_input(mul, s) is x:
            return ActivationSite(
                mul.name or node.name, graph, product, f"x * {node.op}(x)", x, mul.outputs[0], [node, mul]
            )
        try:
            swish = _swish(graph, node, mul) if node.op == "Sigmoid" and len(mul.inputs) == 2 else None
        except NoSite:
            if gate not in wanted:
                raise
            swish = None  # the gate alone still converts
        if swish is not None:
            return swish
    if gate not in wanted:
        raise NoSite(f"a {node.op} that is no {label} (x * {node.op}(x)), and {gate} was not asked for")
    return ActivationSite(node.name, graph, gate, node.op, x, s, [node])


def _hardsigmoid(graph: gs.Graph, node: gs.Node, wanted: set[str]) -> ActivationSite:
    """torch's hardsigmoid is HardSigmoid(alpha=1/6, beta=0.5), what the shipped sets are fitted to.
    Any other alpha > 0 and beta (ONNX's default 0.2, Keras 2's hard_sigmoid) is torch's of
    6 alpha x + 6 beta - 3: alone, the op reads that (a Mul and an Add before it); as the gate of
    x * HardSigmoid(x) with beta 0.5, HardSwish's set rescaled by 6 alpha (HardSwish(s x) / s)."""
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    site = _gate(graph, node, wanted)
    if math.isclose(alpha, 1 / 6, rel_tol=1e-3) and math.isclose(beta, 0.5, rel_tol=1e-3):
        return site
    label = f"HardSigmoid (alpha={alpha:g}, beta={beta:g})"
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha > 0):
        raise NoSite(f"{label}: the sets compute an increasing HardSigmoid (alpha > 0, both finite)")
    gain, shift = 6 * alpha, 6 * beta - 3
    if site.function == "hardsigmoid":
        site.affine, site.form = (gain, shift), label
        return site
    if not math.isclose(beta, 0.5, rel_tol=1e-3):
        if "hardsigmoid" not in wanted:
            raise NoSite(f"x * {label}(x): only beta=0.5 is HardSwish rescaled (hardsigmoid converts the gate)")
        x, gate = node.inputs[0], node.outputs[0]
        return ActivationSite(node.name, graph, "hardsigmoid", label, x, gate, [node], affine=(gain, shift))
    if not _in_window(gain):
        raise _outside_window(f"x * {label}(x): 6 * alpha")
    site.scale, site.form = gain, f"x * {label}(x)"
    return site


AFFINE = ("gain", "shift")
MAX_CLAMP_STEPS = 2  # after Clip(x + 3, 0, 6): / 6 (or * 1/6) and * x, in either order
CLAMP_PROBE = 1e4  # far beyond either bound: where the clamp's output is its bound


# a clamp written with two ops: (first op, second op) -> how reports spell it, of u and the upper bound h
CLAMPS = {
    ("Max", "Min"): "Min(Max({u}, 0), {h})",
    ("Min", "Max"): "Max(Min({u}, {h}), 0)",
    ("Relu", "Min"): "Min(Relu({u}), {h})",
}
CLAMP_STARTS = ("Clip", "Max", "Min", "Relu")


@dataclass(frozen=True)
class HardClamp:
    """A clamp of u = a x + b to [0, h] that starts a HardSigmoid: ReLU6(x + 3) (h = 6, divided by
    6 after it) or HardSigmoid(alpha, beta)'s own body, Clip(alpha x + beta, 0, 1) (h = 1)."""

    x: gs.Tensor
    a: float
    b: float
    end: gs.Tensor  # the clamp's output
    spelling: str
    high: int  # h: 6 or 1

    @property
    def torch_affine(self) -> tuple[float, float]:
        """(gain, shift): clamp(u, 0, h) / h is torch's HardSigmoid of gain x + shift."""
        return 6 * self.a / self.high, 6 * self.b / self.high - 3


def _affine_of(graph: gs.Graph, tensor: gs.Tensor) -> tuple[gs.Tensor, float, float] | None:
    """`tensor` as a x + b (an Add of a scalar b, to x or to a Mul of x by a scalar a): (x, a, b)."""
    add = tensor.inputs[0] if tensor.inputs else None
    if add is None or add.op != "Add" or (add.domain or "") not in DEFAULT_DOMAINS or len(add.inputs) != 2:
        return None
    for term, offset in (add.inputs, add.inputs[::-1]):
        b = constant_value(offset)
        if b is None or b.size != 1 or constant_value(term) is not None:
            continue
        x, a, _ = _scaled(graph, term)
        _keeps_rank(offset, b, x)
        return x, a, float(b.reshape(-1)[0])
    return None


def _hard_clamp(graph: gs.Graph, start: gs.Node) -> HardClamp | None:
    """The HardClamp `start` begins (Clip, or the first of two ops), None where it begins none: its
    input is no a x + b of one tensor, or it is no clamp to [0, 6] of x + 3 nor to [0, 1] of
    a x + b with a > 0 (a plain ReLU6, another shift). The bounds are read by evaluating the clamp."""
    shifted = [t for t in start.inputs[: 1 if start.op in ("Clip", "Relu") else 2] if constant_value(t) is None]
    if len(shifted) != 1 or (start.op in ("Max", "Min") and len(start.inputs) != 2):
        return None
    affine = _affine_of(graph, shifted[0])
    if affine is None:
        return None
    x, a, b = affine
    if start.op == "Clip":
        end, template = start.outputs[0], "Clip({u}, 0, {h})"
    else:
        consumers = list(start.outputs[0].outputs)
        pair = (start.op, consumers[0].op) if len(consumers) == 1 else None
        if (
            pair not in CLAMPS
            or start.outputs[0] in graph.outputs
            or (consumers[0].domain or "") not in DEFAULT_DOMAINS
        ):
            return None
        end, template = consumers[0].outputs[0], CLAMPS[pair]
    if not a > 0 or not math.isfinite(b):
        return None
    try:
        low, high = _evaluate(_chain(graph, x, end), x, end, np.array([-CLAMP_PROBE - b, CLAMP_PROBE - b]) / a)
    except NoSite:
        low = high = math.nan  # (x + 3 is still judged by the chain, which says why)
    if low == 0 and math.isclose(high, 1, rel_tol=1e-3):
        u = f"{a:.4g} x + {b:.4g}".replace("+ -", "- ")
        return HardClamp(x, a, b, end, template.format(u=u, h=1), 1)
    if math.isclose(a, 1) and math.isclose(b, 3, rel_tol=1e-3):  # ReLU6(x + 3): the chain's evaluation judges it
        return HardClamp(x, a, b, end, template.format(u="x + 3", h=6), 6)
    return None


def _hard_forms(clamp: HardClamp) -> dict[str, str]:
    """How reports spell the HardSigmoid and HardSwish a clamp to [0, h] begins."""
    hardsigmoid = clamp.spelling + (" / 6" if clamp.high == 6 else "")
    return {"hardsigmoid": hardsigmoid, "hardswish": f"x * {hardsigmoid}"}


def _hard_targets(clamp: HardClamp) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points x where torch's HardSigmoid of the clamp's affine input spans its whole shape
    (gain x + shift on CHAIN_CHECK_POINTS: on a fixed range of x a shifted gate can be flat), and
    what the chain must compute there to be each function: that HardSigmoid, and x times it where
    that is HardSwish rescaled (no shift)."""
    gain, shift = clamp.torch_affine
    points = (CHAIN_CHECK_POINTS - shift) / gain
    gate = SITE_FUNCTIONS["hardsigmoid"].exact(CHAIN_CHECK_POINTS)
    targets = {"hardsigmoid": gate}
    if abs(shift) <= 1e-3 * max(1.0, gain):
        targets["hardswish"] = points * gate
    return points, targets


def _clamp_chain(graph: gs.Graph, clamp: HardClamp) -> tuple[dict, str]:
    """Follow the Muls and Divs after the clamp (at most MAX_CLAMP_STEPS), evaluating the chain at
    each: {function: (output, nodes)} for each function it computes on the way, and why it stopped."""
    x, (points, targets) = clamp.x, _hard_targets(clamp)
    found, end, stop = {}, clamp.end, ""
    for step in range(MAX_CLAMP_STEPS + 1):
        if step:
            consumers = list(end.outputs)
            if end in graph.outputs or len(consumers) != 1 or consumers[0].op not in ("Mul", "Div"):
                found_ops = (
                    "a graph output" if end in graph.outputs else ", ".join(c.op for c in consumers) or "nothing"
                )
                stop = f" ({end.name!r} feeds {found_ops}, not one Mul or Div)"
                break
            if (consumers[0].domain or "") not in DEFAULT_DOMAINS or len(consumers[0].inputs) != 2:
                stop = f" ({consumers[0].op} {consumers[0].name!r} is no two-input op of the default domain)"
                break
            end = consumers[0].outputs[0]
        try:
            nodes = _chain(graph, x, end)
            values = _evaluate(nodes, x, end, points)
        except NoSite as exc:  # this step leaves the function (a gate times another tensor): keep what was found
            stop = f" ({exc})"
            break
        for function, target in targets.items():
            if np.max(np.abs(values - target)) <= CHAIN_TOLERANCE:
                found[function] = (end, nodes)
    return found, stop


def _hard_site(graph, start: gs.Node, clamp: HardClamp, function: str, found: dict) -> ActivationSite:
    output, nodes = found[function]
    form = _hard_forms(clamp)[function]
    gain, shift = clamp.torch_affine
    site = ActivationSite(start.name or output.name, graph, function, form, clamp.x, output, nodes)
    unit = math.isclose(gain, 1, rel_tol=1e-6) and abs(shift) <= 1e-6
    if function == "hardsigmoid" and not unit:
        site.affine = (gain, shift)
    elif function == "hardswish" and not unit:
        if not _in_window(gain):
            raise _outside_window(f"{form}: 6 * alpha")
        site.scale = gain
    return site


def _relu6_hard(graph: gs.Graph, start: gs.Node, wanted: set[str]) -> ActivationSite | None:
    """Clip(x + 3, 0, 6) / 6 (HardSigmoid) and x times it (HardSwish), the products and the
    division in any order, and HardSigmoid(alpha, beta)'s body Clip(alpha x + beta, 0, 1) (x times
    it with beta 0.5: HardSwish rescaled); the clamp also as two ops. The Muls and Divs after the
    clamp are followed and the chain evaluated. None for a clamp that is no such start (a plain ReLU6)."""
    clamp = _hard_clamp(graph, start)
    if clamp is None:
        return None
    found, stop = _clamp_chain(graph, clamp)
    for function in ("hardswish", "hardsigmoid"):
        if function in found and function in wanted:
            return _hard_site(graph, start, clamp, function, found)
    if found:
        function = next(iter(found))
        raise NoSite(f"a {_hard_forms(clamp)[function]} ({function}), and {function} was not asked for")
    begin = "Clip(x + 3)" if start.op == "Clip" and clamp.high == 6 else clamp.spelling
    raise NoSite(
        f"{begin} and the Muls and Divs after it compute no HardSigmoid or HardSwish of {clamp.x.name!r}{stop}"
    )


def _tanh(graph: gs.Graph, node: gs.Node, wanted: set[str]) -> ActivationSite:
    gelu_reason = None
    if "gelu" in wanted:
        try:
            return _gelu_chain(graph, node, "tanh form")
        except NoSite as exc:
            gelu_reason = str(exc)
    if "tanh" not in wanted:
        raise NoSite(f"no GELU (tanh form): {gelu_reason}")
    return ActivationSite(node.name, graph, "tanh", "Tanh", node.inputs[0], node.outputs[0], [node])


def _outside_window(label: str) -> NoSite:
    """Why a Swish-beta with its beta outside SWISH_BETAS is left alone; `label` names it."""
    return NoSite(f"{label} outside [{SWISH_BETAS[0]:g}, {SWISH_BETAS[1]:g}], where a rescaled set stays in float32")


def _not_gelu(form: str, beta: float) -> NoSite:
    """With gelu asked for but not silu: a QuickGELU is a SiLU; say how to convert it."""
    return NoSite(f"{form} is SiLU({beta:.4g} x) / {beta:.4g}, not GELU: add silu to --activations")


def _swish_op(graph: gs.Graph, node: gs.Node) -> ActivationSite:
    """ONNX's Swish (opset 24): x * Sigmoid(alpha x), alpha 1 unless set; SiLU's set rescaled."""
    alpha = float(node.attrs.get("alpha", 1.0))
    if not _in_window(alpha):
        raise _outside_window(f"Swish with alpha={alpha:g}:")
    return ActivationSite(
        node.name, graph, "silu", f"Swish (alpha={alpha:.4g})", node.inputs[0], node.outputs[0], [node], scale=alpha
    )


def _quick_gelu_op(graph: gs.Graph, node: gs.Node, wanted: set[str]) -> ActivationSite:
    """onnxruntime's QuickGelu, x * Sigmoid(alpha x) (alpha 1.702 unless set): a Swish-beta."""
    alpha = float(node.attrs.get("alpha", QUICK_GELU))
    form = f"{MS_DOMAIN}::QuickGelu (alpha={alpha:.4g})"
    if "silu" not in wanted:
        raise _not_gelu(form, alpha)
    if not _in_window(alpha):
        raise _outside_window(f"{form}: alpha")
    return ActivationSite(node.name, graph, "silu", form, node.inputs[0], node.outputs[0], [node], scale=alpha)


def _quick_gelu_pointer(graph: gs.Graph, node: gs.Node) -> None:
    """With gelu asked for but not silu: a QuickGELU is no GELU; say how to convert it."""
    consumers = list(node.outputs[0].outputs)
    if len(consumers) != 1 or consumers[0].op != "Mul" or len(consumers[0].inputs) != 2:
        return None
    try:
        site = _swish(graph, node, consumers[0])
    except NoSite:
        return None
    if site is not None and math.isclose(site.scale, QUICK_GELU, rel_tol=1e-3):
        raise _not_gelu(site.form, site.scale)
    return None


def _match(graph: gs.Graph, node: gs.Node, wanted: set[str]) -> ActivationSite | None:
    """The site `node` starts, None if it starts none of the wanted forms; NoSite says why not."""
    domain = node.domain or ""
    if domain in DEFAULT_DOMAINS:
        if node.op == "Gelu" and "gelu" in wanted:
            return _gelu_op(graph, node)
        if node.op == "Erf" and "gelu" in wanted:
            return _gelu_chain(graph, node, "Erf form")
        if node.op == "Sigmoid" and wanted & {"sigmoid", "silu"}:
            return _gate(graph, node, wanted)
        if node.op == "Sigmoid" and "gelu" in wanted:
            return _quick_gelu_pointer(graph, node)
        if node.op == "HardSigmoid" and wanted & {"hardsigmoid", "hardswish"}:
            return _hardsigmoid(graph, node, wanted)
        if node.op == "Swish" and "silu" in wanted:
            return _swish_op(graph, node)
        if node.op in CLAMP_STARTS and wanted & {"hardsigmoid", "hardswish"}:
            return _relu6_hard(graph, node, wanted)
        if node.op == "HardSwish" and "hardswish" in wanted:
            return ActivationSite(node.name, graph, "hardswish", "HardSwish", node.inputs[0], node.outputs[0], [node])
        if node.op == "Tanh" and wanted & {"tanh", "gelu"}:
            return _tanh(graph, node, wanted)
    if domain == MS_DOMAIN and node.op in ("Gelu", "FastGelu", "BiasGelu") and "gelu" in wanted:
        return _gelu_op(graph, node)
    if domain == MS_DOMAIN and node.op == "QuickGelu" and wanted & {"silu", "gelu"}:
        return _quick_gelu_op(graph, node, wanted)
    return None


def _site_dtype(site: ActivationSite):
    """The input's type; where onnx's inference stopped (after onnxruntime's own ops, as its
    optimizer writes them), the output's, the type traced up from the input, or that of a constant
    the site computes with (BiasGelu's bias, the Erf form's 0.5): elementwise ops keep one type."""
    for tensor in (site.x, site.output):
        if known_dtype(tensor) is not None:
            return tensor.dtype
    traced = traced_dtype(site.x)
    if traced is not None:
        return traced
    constants = [t for n in site.nodes for t in n.inputs if isinstance(t, gs.Constant)]
    constants += [site.bias] if isinstance(site.bias, gs.Constant) else []
    return np.asarray(constants[0].values).dtype if constants else None


def _typed(site: ActivationSite) -> ActivationSite:
    dtype = _site_dtype(site)
    if dtype is None or isinstance(dtype, int) or np.dtype(dtype) not in (np.float32, np.float16):
        raise NoSite(
            f"input {site.x.name!r} has type {dtype if dtype is not None else 'unknown'}; "
            "SpikingActivation takes float32 or float16"
        )
    site.dtype = np.dtype(dtype)
    return site


def find_activation_sites(
    graph: gs.Graph, functions: set[str], misses: list[ActivationMiss] | None = None
) -> list[ActivationSite]:
    """Every site of the wanted functions, in graph order; near misses into `misses` with why."""
    unknown = sorted(set(functions) - set(SITE_FUNCTIONS))
    if unknown:
        raise ValueError(f"unknown activations {unknown}; known: {', '.join(SITE_FUNCTIONS)}")
    sites, taken = [], set()
    for sub in walk_graphs(graph):
        for node in sub.nodes:
            if id(node) in taken:
                continue
            try:
                site = _match(sub, node, set(functions))
                if site is not None:
                    sites.append(_typed(site))
                    taken.update(id(n) for n in site.nodes)
            except NoSite as exc:
                if misses is not None:
                    misses.append(ActivationMiss(node.name, graph_label(sub, graph), node.op, str(exc)))
    return sites


def activation_attributes(params: ActivationParams) -> dict:
    """The op's attributes for a set: what the kernels and the function body read (README's contract)."""
    n = params.neuron
    return {
        "thresholds": [float(v) for v in n.thresholds],
        "resets": [float(v) for v in n.resets],
        "weights": [float(v) for v in n.weights],
        "low": float(n.input_range[0]),
        "high": float(n.input_range[1]),
        "bias": params.bias,
        "tails": [float(v) for v in params.tails],
        **({"gate": 1} if params.gate else {}),  # x * the neuron inside the range (a gate set)
    }


def replace_activation(site: ActivationSite, params: ActivationParams, opset: int, names) -> list[str]:
    """Swap the site's nodes for one SpikingActivation (after an Add of the bias, and between
    Casts for float16 below opset 15, where the function body has no casts); the op types inserted."""
    graph, base = site.graph, site.name or site.function
    for node in site.nodes:
        node.inputs.clear()
        node.outputs.clear()
    inserted: list[str] = []
    dtype = site.dtype or np.dtype(site.x.dtype)

    def add(op, inputs, attrs=None, domain=None, out=None, out_dtype=dtype):
        result = out or gs.Variable(names.fresh(f"{base}/{op}_out"), dtype=out_dtype)
        node = gs.Node(op, names.fresh(f"{base}/sit_{op}"), attrs=attrs or {}, inputs=inputs, outputs=[result])
        node.domain = domain
        graph.nodes.append(node)
        inserted.append(op)
        return result

    x = add("Add", [site.x, site.bias]) if site.bias is not None else site.x
    if site.affine is not None:
        gain, shift = (gs.Constant(names.fresh(f"{base}/{n}"), np.array(v, dtype)) for n, v in zip(AFFINE, site.affine))
        x = add("Add", [add("Mul", [x, gain]), shift])
    attrs = activation_attributes(params.rescaled(site.scale) if site.scale != 1.0 else params)
    if dtype == np.float16 and opset < CASTLIKE_OPSET:
        wide = add("Cast", [x], {"to": helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))}, out_dtype=np.float32)
        y = add(SPIKING_ACTIVATION, [wide], attrs, DOMAIN, out_dtype=np.float32)
        add("Cast", [y], {"to": helper.np_dtype_to_tensor_dtype(dtype)}, out=site.output)
    else:
        add(SPIKING_ACTIVATION, [x], attrs, DOMAIN, out=site.output)
    return inserted


def parse_activations(text: str) -> tuple[str, ...]:
    """`gelu,silu` -> ('gelu', 'silu'); 'none' or '' -> (); an unknown name is an error."""
    names = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    if names in ((), ("none",)):
        return ()
    for name in names:
        if name not in SITE_FUNCTIONS:
            known = ", ".join(SITE_FUNCTIONS)
            hint = " (a gate's set is chosen by --activation-form gated)" if name in GATE_FUNCTIONS else ""
            raise SitOnnxError(f"unknown activation {name!r}{hint}; known: {known}")
    return names
