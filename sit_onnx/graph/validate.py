"""Shape inference and the full ONNX checker, run on every model before it is saved.

A source model may already fail onnx's checker and still be a model onnxruntime runs: exporters
and optimisers leave outputs without shapes (onnxconverter-common's float16 pass), and
onnxruntime's optimiser puts its own ops (SimplifiedLayerNormalization, ...) in the default
domain, which onnx does not know. Such a source is not refused: the rewritten model must not
fail the checker in any way the source did not, and the source's complaint becomes a note.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from sit_onnx.errors import SitOnnxError, first_line
from sit_onnx.graph.symbolic import symbolic_types
from sit_onnx.graph.walk import graph_protos, graphs_by_place

# Complaints about a source that onnxruntime can still run: ops onnx does not know, outputs or
# annotations whose type has no shape field (float16 tools write them), nodes out of order
# (onnxruntime sorts them itself; so does the rewrite).
TOLERATED_SOURCE_COMPLAINTS = ("No Op registered for", "Field 'shape' of 'type' is required but missing")
UNSORTED = "Nodes in a graph must be topologically sorted"


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Best-effort shape/type inference so the rewrite knows dtypes; never fails the pass."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # a model onnx cannot infer is still rewritable; dtypes fall back to float32
        return model


def checker_complaint(model: onnx.ModelProto | str, full: bool = True) -> str | None:
    """onnx's checker's first complaint about `model`, or None."""
    try:
        onnx.checker.check_model(model, full_check=full)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        return first_line(exc)
    except ValueError as exc:  # the full check's inference raises it for a type 0 (UNDEFINED) it meets
        return first_line(exc)
    return None


@dataclass(frozen=True)
class SourceCheck:
    """What onnx's checker says of the source: its complaints with and without full_check."""

    full: str | None
    basic: str | None

    @property
    def note(self) -> str | None:
        if self.full is None:
            return None
        return f"the source model already fails onnx's checker ({self.full}); the rewrite was checked against it"


def sorted_nodes(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> list[onnx.NodeProto] | None:
    """The graph's nodes in an order where every input is made before it is read, or None when there
    is none (an input nothing produces, or a cycle); `outer`: what enclosing graphs make (a subgraph's)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""} | outer
    ready |= {t.name for t in graph.sparse_initializer}
    waiting, order = list(graph.node), []
    while waiting:
        placed = [n for n in waiting if all(name in ready for name in n.input)]
        if not placed:
            return None
        for node in placed:
            ready.update(node.output)
        order.extend(placed)
        waiting = [n for n in waiting if not any(n is p for p in placed)]
    return order


def structural_complaint(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> str | None:
    """What the checker stops before when a tolerated complaint (an op it does not know) comes
    first: a tensor made twice, or nodes that cannot be put in order, in the graph or in any subgraph
    (the checker does not enter the subgraphs of ops it does not know: onnxruntime's GreedySearch's
    decoder). Either breaks the rewrite."""
    given = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    made = Counter(name for node in graph.node for name in node.output if name)
    twice = [name for name, count in made.items() if count > 1 or name in given]
    if twice:
        return f"tensor {twice[0]!r} is produced more than once"
    if sorted_nodes(graph, outer) is None:
        return "a node reads a tensor that nothing produces, or the nodes form a cycle"
    visible = outer | given | frozenset(made)
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                complaint = structural_complaint(sub, visible)
                if complaint:
                    return f"{complaint}, in the {attribute.name} of {node.op_type} {node_label(node)!r}"
    return None


def node_label(node: onnx.NodeProto) -> str:
    """How a message names a node: its name, else its first output, else its op type."""
    return node.name or (node.output[0] if node.output else node.op_type)


def check_source(model: onnx.ModelProto, label: str) -> SourceCheck:
    """Refuse a structurally broken source; tolerate what onnxruntime runs anyway. Nodes out of
    order (a float16 tool's output, which onnxruntime sorts itself) are put in order here."""
    basic = checker_complaint(model, full=False)
    if basic is not None and UNSORTED in basic:
        order = sorted_nodes(model.graph)
        if order is not None:
            del model.graph.node[:]
            model.graph.node.extend(order)
            basic = checker_complaint(model, full=False)
    if basic is not None and not any(known in basic for known in TOLERATED_SOURCE_COMPLAINTS):
        raise SitOnnxError(f"{label}: not a valid ONNX model ({basic})")
    broken = None if basic is None else structural_complaint(model.graph)
    if broken:
        raise SitOnnxError(f"{label}: not a valid ONNX model ({broken})")
    return SourceCheck(checker_complaint(model, full=True) if basic is None else basic, basic)


def validate_model(
    model: onnx.ModelProto | str, source: SourceCheck = SourceCheck(None, None), dropped_before: Sequence[str] = ()
) -> list[str]:
    """`check_model(full_check=True)`: types, shapes and functions; a path for models over 2 GB.
    Against a source that fails the checker itself, the rewritten model may fail it the same way.
    Where the checker complains of a shape annotation the source's ops contradict (seen once an
    attention op is expanded), it is dropped (see `drop_contradicted_annotations`); the notes say
    which, with those `dropped_before` (taken out before the rewrite: convert.prepare)."""
    in_memory = isinstance(model, onnx.ModelProto)
    dropped = list(dropped_before)
    complaint = _complaint_beyond_source(model, source)
    if complaint is not None and in_memory:
        dropped += drop_contradicted_annotations(model)
    if complaint is not None and not dropped:
        raise SitOnnxError(f"the rewritten model fails onnx's checker: {complaint}")
    if not dropped:
        return []
    still = complaint and _complaint_beyond_source(model, source)
    if still:
        raise SitOnnxError(
            f"the source is inconsistent: its shape annotation of {', '.join(dropped)} contradicts what its own "
            f"ops compute, and without it onnx's checker says: {still}"
        )
    return [dropped_note(dropped)]


def dropped_note(dropped: Sequence[str]) -> str:
    """The note for annotations `drop_contradicted_annotations` took out of a model."""
    return (
        f"dropped the source's shape annotation of {', '.join(dropped)}: it contradicts what the source's own "
        "ops compute (onnxruntime ignores it in the source, with a warning; the standard ops that take an "
        "attention op's or a softmax's place would be shaped by it)"
    )


def _complaint_beyond_source(model: onnx.ModelProto | str, source: SourceCheck) -> str | None:
    """The checker's complaint about `model` that the source did not already have, or None."""
    complaint = checker_complaint(model, full=True)
    if complaint is None or complaint in (source.full, source.basic):
        return None
    if source.full is not None and checker_complaint(model, full=False) in (None, source.basic):
        return None  # the full check trips over what the source already had; the structure is sound
    return complaint


def drop_contradicted_annotations(
    model: onnx.ModelProto, among: set[str] | None = None, unconfirmed: bool = False, unproven: list | None = None
) -> list[str]:
    """Remove the value_info entries (and give graph outputs the inferred shape) whose rank, fixed
    dims or element type onnx's inference contradicts when it works without them; return them as
    "'name' [dims] (inferred [dims])". With `among`, look at those tensors alone (graph outputs
    left as they are); with `unconfirmed`, also drop an annotation whose fixed dims inference cannot
    confirm, listed in `unproven` (when given) as "'name' [dims]".

    An optimiser's fusion may keep a stale annotation on the fused op's output (onnxscript's
    MultiHeadAttention fusion of GPT-2 says [16*b, 64] of a [b, 16, 64] tensor). Behind an op onnx
    does not know, nothing checks it, and onnxruntime merges it leniently; once the op is expanded
    into standard ops, the checker refuses the model for it, or, where inference cannot tell (a
    fixed dim where the data has another), onnxruntime trusts it, folds the expansion's shapes by it
    and fails at run time. onnxruntime infers the tensors itself through the standard ops."""
    if among is not None and not any(info.name in among for g in graph_protos(model.graph) for info in g.value_info):
        return []  # nothing to audit: no inference
    inferred = _inferred_without_annotations(model, among)
    dropped = []
    for place, graph in graphs_by_place(model.graph):
        other = inferred[place]  # inference keeps every graph where it was, even where it gives up
        found = {info.name: info.type for info in other.value_info}
        keep = []
        for info in graph.value_info:
            if among is not None and info.name not in among:
                keep.append(info)
            elif info.name in found and _contradicts(info.type, found[info.name]):
                dropped.append(f"{info.name!r} {_dims(info.type)} (inferred {_dims(found[info.name])})")
            elif not unconfirmed or _confirmed(info.type, found.get(info.name)):
                keep.append(info)
            elif unproven is not None:
                unproven.append(f"{info.name!r} {_dims(info.type)}")
        del graph.value_info[:]
        graph.value_info.extend(keep)
        outputs = {info.name: info.type for info in other.output}
        for output in graph.output:
            if among is None and output.name in outputs and _contradicts(output.type, outputs[output.name]):
                dropped.append(f"output {output.name!r} {_dims(output.type)} (inferred {_dims(outputs[output.name])})")
                _take_shape(output.type, outputs[output.name])
    return dropped


def _inferred_without_annotations(
    model: onnx.ModelProto, among: set[str] | None = None
) -> dict[tuple, onnx.GraphProto]:
    """Each graph, by place, as onnx's inference types it from the inputs alone: no value_info,
    graph outputs without their shapes. Where onnx's inference stops short of an annotated tensor
    (of `among`) in the main graph, past an onnxruntime op it has no schema for, onnxruntime's
    symbolic inference fills the gaps."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    for graph in graph_protos(bare.graph):
        del graph.value_info[:]
        for output in graph.output:
            if output.type.HasField("tensor_type"):
                output.type.tensor_type.ClearField("shape")
    inferred = dict(graphs_by_place(infer_shapes(bare).graph))
    main = inferred[()]
    known = {info.name for info in main.value_info}
    if any(info.name not in known and (among is None or info.name in among) for info in model.graph.value_info):
        gaps = symbolic_types(bare, guess=False)
        main.value_info.extend(
            onnx.helper.make_value_info(info.name, gaps[info.name])
            for info in model.graph.value_info
            if info.name not in known and info.name in gaps and gaps[info.name].tensor_type.HasField("shape")
        )
    return inferred


def _confirmed(declared: onnx.TypeProto, inferred: onnx.TypeProto | None) -> bool:
    """Inference gives the declared rank and every fixed dim declared (named dims need no proof).
    An annotation that declares no shape (an element type alone, as onnx's version converter writes
    them, or a sequence) claims nothing to confirm."""
    if not (declared.HasField("tensor_type") and declared.tensor_type.HasField("shape")):
        return True
    if inferred is None or not inferred.HasField("tensor_type") or not inferred.tensor_type.HasField("shape"):
        return False
    a, b = declared.tensor_type.shape.dim, inferred.tensor_type.shape.dim
    return len(a) == len(b) and all(not x.dim_value or x.dim_value == y.dim_value for x, y in zip(a, b))


def _take_shape(declared: onnx.TypeProto, inferred: onnx.TypeProto) -> None:
    """Give a graph output the inferred shape (the checker wants one), its made-up names left blank."""
    shape = declared.tensor_type.shape
    shape.CopyFrom(inferred.tensor_type.shape)
    for dim in shape.dim:
        if dim.dim_param.startswith("unk__"):
            dim.ClearField("dim_param")


def _contradicts(declared: onnx.TypeProto, inferred: onnx.TypeProto) -> bool:
    """Tensor types that cannot both hold: element types, ranks or fixed dims that differ. (A graph
    output keeps its declared element type through the inference here, so only its shape can.)"""
    if not (declared.HasField("tensor_type") and inferred.HasField("tensor_type")):
        return False
    a, b = declared.tensor_type, inferred.tensor_type
    if a.elem_type and b.elem_type and a.elem_type != b.elem_type:
        return True
    if not (a.HasField("shape") and b.HasField("shape")):
        return False
    if len(a.shape.dim) != len(b.shape.dim):
        return True
    return any(x.dim_value and y.dim_value and x.dim_value != y.dim_value for x, y in zip(a.shape.dim, b.shape.dim))


def _dims(kind: onnx.TypeProto) -> str:
    """A shape as the messages write it: named dims by name, unknown ones (onnx's unk__N) as ?."""
    dims = kind.tensor_type.shape.dim
    return "[" + ", ".join(_dim(d) for d in dims) + "]"


def _dim(dim: onnx.TensorShapeProto.Dimension) -> str:
    if dim.HasField("dim_value"):
        return str(dim.dim_value)
    return "?" if not dim.dim_param or dim.dim_param.startswith("unk__") else dim.dim_param
