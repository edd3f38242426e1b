"""Matcher: softmax written out by hand, starting from its Exp:
`Div(e, ReduceSum(e, axis, keepdims=1))` or `Mul(e, Reciprocal(ReduceSum(...)))`, `e = Exp(x)`,
x optionally `x - ReduceMax(x)` over the same axis, the sum optionally between Casts (mixed
precision: e cast up, summed, cast back). Each refusal says why."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from sit_onnx.graph.matchers.base import (
    DECOMPOSED,
    DECOMPOSED_SHIFTED,
    DEFAULT_DOMAINS,
    Match,
    SoftmaxSite,
    constant_value,
)


def match(graph: gs.Graph, node: gs.Node) -> Match | None:
    if node.op != "Exp" or (node.domain or "") not in DEFAULT_DOMAINS:
        return None
    site, reason = _decomposed_site(graph, node)
    return Match(site, reason)


def _single_axis(node: gs.Node, dropped_ok: bool = False) -> tuple[int | None, str | None]:
    """The one reduction axis of a ReduceSum/ReduceMax (attribute or constant input), or why not.
    keepdims=0 only where the caller checks the shape plumbing that restores the axis."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1:
        value = constant_value(node.inputs[1])
        if value is None:
            return None, f"{node.op} {node.name!r} takes its axes from a tensor that is not constant"
        axes = value.reshape(-1).tolist()
    if axes is None:
        return None, f"{node.op} {node.name!r} reduces over every axis"
    if len(axes) != 1:
        return None, f"{node.op} {node.name!r} reduces over {len(axes)} axes, a softmax over one"
    if node.attrs.get("keepdims", 1) != 1 and not dropped_ok:
        return None, f"{node.op} {node.name!r} has keepdims=0 (shape plumbing between the steps is not matched)"
    return int(axes[0]), None


PLUMBING = ("Cast", "Reshape", "Unsqueeze", "Expand")


def _through_plumbing(tensor: gs.Tensor) -> tuple[gs.Tensor, list[gs.Node]]:
    """Follow single-consumer Cast/Reshape/Unsqueeze/Expand nodes down from `tensor` (each taking
    it as its data input): a keepdims=0 sum on its way back to the division."""
    nodes = []
    while len(tensor.outputs) == 1 and tensor.outputs[0].op in PLUMBING and tensor.outputs[0].inputs[0] is tensor:
        nodes.append(tensor.outputs[0])
        tensor = nodes[-1].outputs[0]
    return tensor, nodes


def restores_axis(divisor: gs.Tensor, e: gs.Tensor, axis: int, plumbing: list[gs.Node] = ()) -> str | None:
    """None when `divisor` has e's shape with the reduced axis kept (as 1, or broadcast back to its
    length), by the inferred shapes; else why that cannot be told. One dim that inference names
    differently on the two sides (onnx names a batch dim anew after a Slice) is still e's when the
    plumbing keeps the sum's element count: the other dims match and the axis is 1, so the
    remaining dim holds what is left of the count, which is e's dim."""
    want, got = e.shape, divisor.shape
    if want is None or got is None:
        return "the shape plumbing after it cannot be checked (shapes unknown)"
    if len(want) != len(got):
        return f"the sum comes back with rank {len(got)}, the Exp's output has rank {len(want)}"
    axis %= len(want)
    if got[axis] not in (1, want[axis]) or got[axis] is None:
        return f"the sum comes back with dimension {got[axis]!r} where the axis had {want[axis]!r}"
    unproven = [i for i, (w, g) in enumerate(zip(want, got)) if i != axis and (g != w or g is None)]
    if not unproven or (len(unproven) == 1 and got[axis] == 1 and plumbing and keeps_count(plumbing)):
        return None
    return f"the sum comes back with shape {list(got)}, the Exp's output has {list(want)}"


def keeps_count(plumbing: list[gs.Node]) -> bool:
    """Whether the nodes between the keepdims=0 sum and the division keep its element count: Casts,
    Reshapes, Unsqueezes, and Expands whose inferred output shape is their input's or that expand
    a Reshape to the Reshape's own shape."""

    def known(shape) -> bool:
        return shape is not None and all(d is not None for d in shape)

    def keeps(node: gs.Node) -> bool:
        if node.op != "Expand":
            return node.op in ("Cast", "Reshape", "Unsqueeze")
        before, after = node.inputs[0].shape, node.outputs[0].shape
        return (known(before) and known(after) and list(before) == list(after)) or _expands_to_own_shape(node)

    return all(keeps(node) for node in plumbing)


def _expands_to_own_shape(expand: gs.Node) -> bool:
    """Expand(Reshape(t, s), s), as jax2tf writes it: broadcasting a tensor of shape s to s keeps it,
    whatever inference names the dims (onnxruntime's float16 converter annotates each anew)."""
    source = expand.inputs[0].inputs[0] if expand.inputs[0].inputs else None
    return (
        source is not None
        and source.op == "Reshape"
        and len(source.inputs) > 1
        and len(expand.inputs) > 1
        and source.inputs[1] is expand.inputs[1]
    )


def _through_casts(tensor: gs.Tensor) -> tuple[gs.Tensor, list[gs.Node]]:
    """Follow a chain of single-consumer Casts down from `tensor`: the tensor at its end and the Casts."""
    casts = []
    while len(tensor.outputs) == 1 and tensor.outputs[0].op == "Cast":
        casts.append(tensor.outputs[0])
        tensor = casts[-1].outputs[0]
    return tensor, casts


def _sum_via(node: gs.Node) -> tuple[list[gs.Node], gs.Node | None]:
    """A consumer of e that is the ReduceSum, or Casts leading to it: (the Casts, the ReduceSum)."""
    if node.op == "ReduceSum":
        return [], node
    if node.op != "Cast":
        return [], None
    end, casts = _through_casts(node.outputs[0])
    summed = end.outputs[0] if len(end.outputs) == 1 and end.outputs[0].op == "ReduceSum" else None
    return [node, *casts], summed


def _sum_and_scale(e: gs.Tensor) -> tuple[list[gs.Node] | None, gs.Node | None, str | None]:
    """The nodes from `e` to the sum's use (optional Casts, the ReduceSum, optional Casts, and a
    Reciprocal for the Mul form) and the node dividing `e` by it: Div(e, s) or Mul(e, Reciprocal(s))."""
    consumers = list(e.outputs)
    sums = [(n, *_sum_via(n)) for n in consumers]
    sums = [(n, casts, summed) for n, casts, summed in sums if summed is not None]
    if not sums:
        end, _ = _through_casts(e)
        if end is not e and any(n.op == "ReduceSum" for n in end.outputs):
            return (
                None,
                None,
                "its output is cast, then summed and divided: the division must take the Exp's own output",
            )
        return None, None, None  # an Exp that is no softmax at all: not worth a word
    if len(consumers) != 2 or len(sums) != 1:
        return None, None, f"its output has {len(consumers)} consumers; a softmax's Exp feeds a ReduceSum and a Div"
    first, casts_in, reduce_sum = sums[0]
    dropped = reduce_sum.attrs.get("keepdims", 1) == 0
    total, casts_out = (_through_plumbing if dropped else _through_casts)(reduce_sum.outputs[0])
    before = [*casts_in, reduce_sum, *casts_out]
    if len(total.outputs) != 1:
        return None, None, f"the sum {reduce_sum.name!r} has other consumers than the division"
    scale = total.outputs[0]
    other = next(n for n in consumers if n is not first)
    if scale.op == "Div" and scale is other and scale.inputs[0] is e and scale.inputs[1] is total:
        return before, scale, None
    if scale.op == "Reciprocal" and len(scale.outputs[0].outputs) == 1:
        mul = scale.outputs[0].outputs[0]
        if mul is other and mul.op == "Mul" and {id(t) for t in mul.inputs} == {id(e), id(scale.outputs[0])}:
            return [*before, scale], mul, None
    return None, None, f"the sum {reduce_sum.name!r} does not divide the Exp's own output"


def _decomposed_site(graph: gs.Graph, exp: gs.Node) -> tuple[SoftmaxSite | None, str | None]:
    """Match `Div(e, ReduceSum(e, axis, keepdims=1))` or `Mul(e, Reciprocal(ReduceSum(...)))` with
    `e = Exp(x)` (x optionally `x - ReduceMax(x)` over the same axis, the sum optionally between
    Casts): the site, or why not."""
    e = exp.outputs[0]
    between, scale, reason = _sum_and_scale(e)
    if between is None:
        return None, reason
    reduce_sum = next(n for n in between if n.op == "ReduceSum")
    axis, reason = _single_axis(reduce_sum, dropped_ok=True)
    if axis is None:
        return None, reason
    if reduce_sum.attrs.get("keepdims", 1) == 0:
        divisor = scale.inputs[1] if scale.op == "Div" else between[-1].inputs[0]
        plumbing = [n for n in between[between.index(reduce_sum) + 1 :] if n.op in PLUMBING]
        reason = restores_axis(divisor, e, axis, plumbing)
        if reason is not None:
            return None, f"ReduceSum {reduce_sum.name!r} has keepdims=0 and {reason}"
    nodes = [exp, *between, scale]
    logits, pattern = exp.inputs[0], DECOMPOSED
    sub = exp.inputs[0].inputs[0] if exp.inputs[0].inputs else None
    if sub is not None and sub.op == "Sub" and len(sub.outputs[0].outputs) == 1 and sub.inputs[1].inputs:
        reduce_max = sub.inputs[1].inputs[0]
        if (
            reduce_max.op == "ReduceMax"
            and reduce_max.inputs[0] is sub.inputs[0]
            and _single_axis(reduce_max)[0] == axis
            and len(reduce_max.outputs[0].outputs) == 1
        ):
            nodes = [reduce_max, sub] + nodes
            logits, pattern = sub.inputs[0], DECOMPOSED_SHIFTED
    return SoftmaxSite(exp.name or scale.name, graph, pattern, axis, logits, scale.outputs[0], nodes), None
