"""SIT-conversion of a whole model: load → analyse → rewrite → validate → save.

`rewrite_model` works on a ModelProto and returns the new model and a report;
`sit_onnx.graph.convert_file.rewrite_file` adds file handling (atomic output,
external data). The input is never modified.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import version_converter

from sit_onnx.domain import DOMAIN, DOMAIN_VERSION, SPIKING_ACTIVATION, SPIKING_EXP
from sit_onnx.errors import SitOnnxError, first_line
from sit_onnx.graph.activations import ActivationMiss, find_activation_sites, replace_activation
from sit_onnx.graph.attention import AttentionOp, expand_attention, is_attention_op
from sit_onnx.graph.attribute_types import mistyped_attribute
from sit_onnx.graph.functions import spiking_functions
from sit_onnx.graph.inline import inline_spiking_functions, spell_out_defaults
from sit_onnx.graph.light import light_copy, write_back
from sit_onnx.graph.load import default_opset
from sit_onnx.graph.matchers.base import DEFAULT_DOMAINS
from sit_onnx.graph.opaque import hide_opaque, restore_opaque
from sit_onnx.graph.report import RewriteReport, SiteReport, attention_summary, count_ops
from sit_onnx.graph.rewrite_softmax import NamePool, replace_site
from sit_onnx.graph.site_roles import ATTENTION
from sit_onnx.graph.sites import SOFTMAX, NearMiss, SoftmaxSite, constant_value, find_sites
from sit_onnx.graph.validate import (
    SourceCheck,
    check_source,
    drop_contradicted_annotations,
    infer_shapes,
    node_label,
    validate_model,
)
from sit_onnx.graph.walk import graph_label, graph_protos, graphs_by_place, walk_graphs
from sit_onnx.neurons.activation import (
    ActivationParams,
    activation_function,
    load_activation,
    set_function,
    shipped_activation,
)
from sit_onnx.neurons.params import PAPER_RANGE, SHIFT_RANGE, NeuronParams, load_params, shipped_params
from sit_onnx.neurons.softmax import SoftmaxOptions

ACTIVATION_FORMS = ("direct", "gated")
MIN_OPSET = 13  # function bodies need ReduceSum's axes input; older models are converted up first


@dataclass(frozen=True)
class RewriteOptions:
    """How to convert (mirrors `sit-onnx rewrite`'s flags)."""

    steps: int = 12
    params_file: str | None = None
    objective: str | None = None  # of the shipped set: None = softmax with shift, exp-rmse without
    sigmoid: bool = False
    shift: bool = True
    time_steps: int = 0
    first: int | None = None
    nodes: tuple[str, ...] = ()
    inline: bool = False
    strict: bool = False  # attention ops left alone are an error, not a note
    attention_only: bool = False  # convert only sites whose weights mix computed values (site_roles.py)
    # One SpikingSoftmax node per site (its function body is SpikingExp -> SpikingNorm), or the
    # explicit chain of standard ops and the two neurons. None: fused, except for an ensemble set.
    fuse: bool | None = None
    # Activations converted besides softmax (gelu, silu, sigmoid, tanh, hardsigmoid, hardswish; default
    # none), with the shipped set for K unless one of `activation_params` (files) is fitted to that function.
    activations: tuple[str, ...] = ()
    activation_params: tuple[str, ...] = ()
    # K of the activations' neurons (None: the softmax set's K). GELU's error dominates a converted
    # encoder's (issue 14): spending steps there and not on softmax is the better trade.
    activation_steps: int | None = None
    # "direct": each neuron computes its activation (the layer behind it is fed by spikes); "gated":
    # GELU, SiLU and HardSwish as x * gate(x), the neuron computing the gate: 2-5x less error, but
    # the product is analog, so the layer behind it stays MACs. Functions without a gate are direct.
    activation_form: str = "direct"

    def activation_k(self, steps: int) -> int:
        """The activations' K, given the softmax set's K."""
        return steps if self.activation_steps is None else self.activation_steps

    def activation_sets(self, steps: int) -> dict[str, ActivationParams]:
        """Per asked-for function, its set: a given file, else the shipped one for the activations' K
        (`steps`, the softmax set's K, unless `activation_steps` says otherwise)."""
        steps = self.activation_k(steps)
        if self.activation_form not in ACTIVATION_FORMS:
            raise SitOnnxError(f"--activation-form {self.activation_form!r}; known: {', '.join(ACTIVATION_FORMS)}")
        given = {}
        for path in self.activation_params:
            loaded = load_activation(path)
            serves = activation_function(loaded.function).site_function
            if serves in given:
                raise SitOnnxError(f"--activation-params: two files for {serves}")
            given[serves] = loaded
        stray = sorted(set(given) - set(self.activations))
        if stray:
            held = given[stray[0]].function
            raise SitOnnxError(f"--activation-params holds a {held} set, but --activations does not name {stray[0]}")
        return {
            name: given.get(name) or shipped_activation(self.set_function(name), steps) for name in self.activations
        }

    def set_function(self, name: str) -> str:
        """The function of the set a site of `name` gets: its gate when gated and it has one."""
        return set_function(name, self.activation_form == "gated")

    def softmax_options(self) -> SoftmaxOptions:
        """How each site's neurons are fed: the reference's options (the same numbers, by construction)."""
        return SoftmaxOptions(sigmoid=self.sigmoid, shift=self.shift, time_steps=self.time_steps)

    def neuron_params(self) -> NeuronParams:
        """The explicit file, else the shipped set for K on the range the mode feeds SI-exp."""
        if self.params_file:
            if self.objective:
                raise SitOnnxError("--objective picks a shipped set; it has no meaning with --params")
            return load_params(self.params_file)
        if self.objective == "softmax" and not self.shift:  # "shipped there: none" said less
            raise SitOnnxError(
                "--objective softmax sets are fitted to rows of max-shifted logits: they need --shift "
                "(--no-shift takes the paper's exp-rmse sets on [-1, 1])"
            )
        return shipped_params(self.steps, SHIFT_RANGE if self.shift else PAPER_RANGE, self.objective)


def _semantics(opset: int, site_pattern: str, axis) -> str:
    if site_pattern != SOFTMAX:
        return f"hand-written softmax over axis {axis}"
    if opset < 13:
        return f"opset {opset}: input coerced to 2-D at axis {axis}, normalised over all trailing dims"
    return f"softmax over axis {axis}"


def _upgrade_opset(model: onnx.ModelProto, opset: int, label: str) -> onnx.ModelProto:
    refused = f"{label}: unsupported opset {opset}: onnx cannot convert this model to opset {MIN_OPSET}"
    unknown = _unknown_standard_op(model)
    if unknown is not None:  # the converter's own words are a printf template: "Op '%s' has no ...Foo1113"
        raise SitOnnxError(f"{refused} ({unknown})")
    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises bare RuntimeError/ValueError with long texts
        raise SitOnnxError(f"{refused} ({first_line(exc)})") from None


def _unknown_standard_op(model: onnx.ModelProto) -> str | None:
    """A node of ONNX's default domain whose op ONNX does not define, said in words, or None."""
    for graph in graph_protos(model.graph):
        for node in graph.node:
            if node.domain in DEFAULT_DOMAINS and not onnx.defs.has(node.op_type):
                return f"node {node_label(node)!r} is a {node.op_type}, which ONNX does not define"
    return None


def _legacy_axes(model: onnx.ModelProto) -> dict[str, int]:
    """Softmax axes as written before an opset upgrade, by node name, for the report."""
    axes = {}
    for node in model.graph.node:
        if node.op_type == "Softmax":
            attr = [a.i for a in node.attribute if a.name == "axis"]
            axes[node.name] = attr[0] if attr else 1
    return axes


def _hides_softmax(node: onnx.NodeProto) -> bool:
    """A softmax, the Exp of a written-out one, or an op that holds one (attention, fused or quantized)."""
    return node.op_type in ("Softmax", "Exp") or is_attention_op(node)


def _functions_hiding_softmax(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """Model-local functions (not ours) holding a softmax, or an attention op that holds one:
    exporters such as torch's dynamo one may wrap modules in functions, where the pass would not
    see their nodes."""
    own = [f for f in model.functions if f.domain != DOMAIN]
    bodies = [onnx.helper.make_graph(f.node, f.name, [], []) for f in own]  # to walk their If/Loop bodies too
    if any(_hides_softmax(n) for body in bodies for graph in graph_protos(body) for n in graph.node):
        return [(f.domain, f.name) for f in own]
    return []


def _inline_functions(model: onnx.ModelProto, targets: list[tuple[str, str]]) -> onnx.ModelProto:
    from onnx import inliner

    return inliner.inline_selected_functions(model, targets, exclude=False)


def _existing_steps(model: onnx.ModelProto) -> int | None:
    """K of a model converted before: its `sit_onnx.steps` metadata (older conversions: counted)."""
    for prop in model.metadata_props:
        if prop.key == "sit_onnx.steps" and prop.value.isdigit():
            return int(prop.value)
    for function in model.functions:
        if function.domain == DOMAIN and function.name == SPIKING_EXP:
            return sum(1 for n in function.node if n.op_type == "GreaterOrEqual")
    return None


@dataclass
class Prepared:
    """The model made ready for the site search: a weightless copy at opset >= 13 with local
    functions and standard Attention ops expanded, and what the steps there did."""

    model: onnx.ModelProto  # holds the weights; receives the rewritten structure at the end
    light: onnx.ModelProto
    aside: set[str]
    source_opset: int
    opset: int
    legacy_axes: dict[str, int]
    source_check: SourceCheck
    attention: list[AttentionOp] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # the source's annotations inference contradicts, taken out
    unproven: list[str] = field(default_factory=list)  # those whose fixed dims it cannot confirm, taken out too
    opaque: dict[bytes, onnx.AttributeProto] = field(default_factory=dict)  # what graphsurgeon carries as placeholders


def _declare_standard_opset(model: onnx.ModelProto) -> list[str]:
    """A model importing no standard opset (only ai.onnx.ml, training or vendor ops) holds no softmax
    to upgrade: it gets the standard opset the converted sites need declared, not an upgrade from
    opset 1 that onnx cannot do."""
    if any(entry.domain in ("", "ai.onnx") for entry in model.opset_import):
        return []
    model.opset_import.append(onnx.helper.make_opsetid("", MIN_OPSET))
    return [f"the model imports no standard opset; opset {MIN_OPSET} declared for what the rewrite adds"]


def prepare(model: onnx.ModelProto, label: str, in_place: bool) -> Prepared:
    model = model if in_place else _copy(model)
    mistyped = mistyped_attribute(model)
    if mistyped is not None:  # onnxruntime refuses such a model; the site search read it as numbers
        raise SitOnnxError(f"{label}: {mistyped}")
    notes = _declare_standard_opset(model)
    source_opset = default_opset(model)
    legacy_axes = _legacy_axes(model) if source_opset < MIN_OPSET else {}
    dropped, unproven = [], []
    if source_opset < MIN_OPSET:
        dropped = _audit_before_upgrade(model, unproven)
        had_softmax = any(n.op_type == "Softmax" for g in graph_protos(model.graph) for n in g.node)
        model = _upgrade_opset(model, source_opset, label)
        notes.append(
            f"model converted from opset {source_opset} to {default_opset(model)} by onnx.version_converter"
            + (" (legacy Softmax semantics kept with Flatten/Reshape)" if had_softmax else "")
        )
    inlined = _functions_hiding_softmax(model)
    if inlined:
        model = _inline_functions(model, inlined)
        notes.append(
            f"inlined {len(inlined)} model-local function(s) to reach the softmax inside: "
            + ", ".join(name for _, name in inlined)
        )
    opset = default_opset(model)
    light, aside = light_copy(model)
    source_check = check_source(light, label)
    if source_check.note:
        notes.append(source_check.note)
    light, attention, audited = _expand_attention_ops(light, opset, unproven)
    dropped += audited
    expanded = [a for a in attention if a.expanded]
    if expanded:
        counts = Counter(a.op for a in expanded)
        kinds = ", ".join(f"{count} {op}" for op, count in counts.items())
        notes.append(f"expanded {kinds} into standard ops, so the softmax inside each is a site")
    return Prepared(
        model, light, aside, source_opset, opset, legacy_axes, source_check, attention, notes, dropped, unproven
    )


def _audit_before_upgrade(model: onnx.ModelProto, unproven: list[str]) -> list[str]:
    """Drop the annotations inference contradicts or cannot confirm before onnx's version converter
    reads them: it keeps a legacy Softmax's semantics by the rank of its input, and a stale rank 2
    on a rank-3 tensor made it normalise one axis where the source normalises all trailing ones.
    Judged on the weightless view; returns the contradicted ones (noted by `finish`), the others
    added to `unproven`."""
    light, _ = light_copy(model)
    dropped = drop_contradicted_annotations(light, _annotated(light), unconfirmed=True, unproven=unproven)
    kept = {place: {info.name for info in graph.value_info} for place, graph in graphs_by_place(light.graph)}
    for place, graph in graphs_by_place(model.graph):
        keep = [info for info in graph.value_info if info.name in kept.get(place, ())]
        del graph.value_info[:]
        graph.value_info.extend(keep)
    return dropped


def _expand_attention_ops(
    light: onnx.ModelProto, opset: int, unproven: list[str]
) -> tuple[onnx.ModelProto, list[AttentionOp], list[str]]:
    """`expand_attention`, and the source's shape annotations that the rewrite's standard ops would
    trust audited: onnxruntime's inference carries a stale dim from anywhere upstream into them
    (the expansions, the spiking ops' function bodies, the version converter's reshapes of a legacy
    Softmax) and folds their shapes by it, where the source's fused op or Softmax never looked.
    Returns the annotations dropped as contradicted (noted by `finish`); those whose fixed dims
    inference cannot confirm go too, added to `unproven` (`rewrite --explain` lists them)."""
    # before the expansion reads them: a stale rank would pick the wrong layout
    dropped = drop_contradicted_annotations(light, _with_upstream(light, _attention_tensors(light)))
    light, attention = expand_attention(light, opset)
    dropped += drop_contradicted_annotations(light, _annotated(light), unconfirmed=True, unproven=unproven)
    return light, attention, dropped


def _annotated(model: onnx.ModelProto) -> set[str]:
    """The tensors the model annotates (value_info), in every graph."""
    return {info.name for graph in graph_protos(model.graph) for info in graph.value_info}


def _toposorted(graph: gs.Graph) -> gs.Graph:
    """Nodes sorted (the main graph's, its subgraphs' and its functions'), the function list left in
    its order: graphsurgeon's sort of that list walks the main graph's subgraphs again at every level
    and never ends on a model with both local functions and an If or Loop (a converted merged
    decoder, given to `rewrite` or `energy` again)."""
    return graph.toposort(mode="nodes")


def _searchable_graph(prepared: Prepared) -> gs.Graph:
    """The light model as graphsurgeon sees it, types inferred and nodes sorted: where sites are found.
    Attributes it cannot carry travel as placeholders (opaque.py), put back by `finish`."""
    inferred = infer_shapes(prepared.light)
    if inferred is prepared.light:  # inference failed and gave the model back: the placeholders go on a copy
        inferred = _copy(inferred)
    prepared.opaque = hide_opaque(inferred)
    graph = gs.import_onnx(inferred)
    return _toposorted(graph)


@dataclass(frozen=True)
class FoundSite:
    """A softmax site as every command sees it: in the canonical model (opset >= 13, local
    functions and Attention ops expanded), with the tensor holding its logits."""

    name: str
    graph: str
    pattern: str
    axis: int
    logits: str


def find_canonical_sites(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[FoundSite]]:
    """The model as the rewrite sees it (weights and all, nothing converted) and its sites: the one
    site finder behind calibrate, layers, energy and the per-site report."""
    prepared = prepare(model, "model", in_place=False)
    graph = _searchable_graph(prepared)
    sites = [
        FoundSite(s.name, graph_label(s.graph, graph), s.pattern, int(s.axis), s.logits.name) for s in find_sites(graph)
    ]
    return write_back(prepared.model, prepared.light, prepared.aside), sites


@dataclass(frozen=True)
class FoundActivation:
    """An activation site in the canonical model, with the tensor that feeds it."""

    name: str
    graph: str
    function: str
    x: str
    scale: float = 1.0  # the function's set reads scale * x (Swish-beta)
    affine: tuple[float, float] | None = None  # (gain, shift): it reads gain * x + shift (a HardSigmoid's alpha, beta)

    def neuron_input(self, x: np.ndarray) -> np.ndarray:
        """What the site's set reads when the site's input is x."""
        gain, shift = self.affine or (1.0, 0.0)
        return self.scale * (gain * x + shift)


def find_canonical_activations(
    model: onnx.ModelProto, functions: set[str]
) -> tuple[onnx.ModelProto, list[FoundActivation]]:
    """The model as the rewrite sees it and its activation sites of `functions` (for calibration)."""
    prepared = prepare(model, "model", in_place=False)
    graph = _searchable_graph(prepared)
    found = [
        FoundActivation(s.name, graph_label(s.graph, graph), s.function, s.x.name, s.scale, s.affine)
        for s in find_activation_sites(graph, functions)
    ]
    return write_back(prepared.model, prepared.light, prepared.aside), found


def select_sites(sites: list[SoftmaxSite], options: RewriteOptions) -> list[str | None]:
    """Per site, None to convert it, or why not (--first, --nodes)."""
    unknown = sorted(set(options.nodes) - {s.name for s in sites})
    if unknown:
        there = f"sites are: {', '.join(s.name for s in sites)}" if sites else "the model has no softmax site"
        raise SitOnnxError(f"--nodes: no softmax site named {', '.join(unknown)}; {there}")
    reasons = []
    for index, site in enumerate(sites):
        if options.first is not None and index >= options.first:
            reasons.append(f"not among the first {options.first} sites (--first)")
        elif options.nodes and site.name not in options.nodes:
            reasons.append("not named in --nodes")
        elif options.attention_only and site.role != ATTENTION:
            reasons.append("not attention (--attention-only): its weights mix no computed values")
        else:
            reasons.append(None)
    return reasons


def apply(
    graph: gs.Graph,
    sites,
    reasons,
    prepared: Prepared,
    params: NeuronParams,
    options: SoftmaxOptions,
    fuse: bool,
    site_params: Mapping[str, NeuronParams] | None = None,
):
    """Replace the selected sites, each with its own set from `site_params` or else `params`;
    one SiteReport per site."""
    site_params = site_params or {}
    names = NamePool(graph)
    reports = []
    for site, reason in zip(sites, reasons):
        axis = prepared.legacy_axes.get(site.nodes[0].name, site.axis) if site.pattern == SOFTMAX else site.axis
        entry = SiteReport(
            site.name,
            graph_label(site.graph, graph),
            site.pattern,
            site.axis,
            _semantics(prepared.source_opset, site.pattern, axis),
            converted=reason is None,
            reason=reason,
            logits=site.logits.name,
            output=site.output.name,
            role=site.role,
        )
        if reason is None:
            own = site_params.get(site.name, params)
            entry.replaced_with = replace_site(site, own, options, fuse, prepared.opset, names)
        reports.append(entry)
    _toposorted(graph.cleanup(remove_unused_graph_inputs=False))
    return reports


def _dead_nodes(graph: gs.Graph, sites: list, source: onnx.ModelProto) -> list[tuple[gs.Graph, gs.Node, list, list]]:
    """The source's nodes no output of their own graph (main or subgraph) depends on before the
    rewrite, but for the sites' own (replaced, dead or not), with their graph, inputs and outputs
    (the cleanup disconnects what it drops). The rewrite's cleanup, which drops the replaced sites
    in every graph, would drop them too, and a converted model should differ from its source at the
    sites alone. Unread nodes an attention op's expansion made (its unused constants) are not the
    source's: they go."""
    site_nodes = {id(n) for site in sites for n in site.nodes}
    written = {name for g in graph_protos(source.graph) for node in g.node for name in node.output}
    dead = []
    for owner in walk_graphs(graph):
        live = _live_nodes(owner) | site_nodes
        dead.extend(
            (owner, n, list(n.inputs), list(n.outputs))
            for n in owner.nodes
            if id(n) not in live and any(t.name in written for t in n.outputs)
        )
    return dead


def _live_nodes(graph: gs.Graph) -> set[int]:
    """The ids of the nodes of `graph` some output of it depends on (through subgraphs' reads too)."""
    producer = {t.name: n for n in graph.nodes for t in n.outputs if t.name}
    wanted, live = [t.name for t in graph.outputs], set()
    while wanted:
        node = producer.get(wanted.pop())
        if node is None or id(node) in live:
            continue
        live.add(id(node))
        wanted.extend(t.name for t in node.inputs if t.name)
        wanted.extend(_read_inside(node))
    return live


def _read_inside(node: gs.Node) -> list[str]:
    """Every tensor name read in a node's subgraphs (those of the outer scope among them)."""
    subgraphs = [v for v in node.attrs.values() if isinstance(v, gs.Graph)]
    return [t.name for sub in subgraphs for g in walk_graphs(sub) for inner in g.nodes for t in inner.inputs if t.name]


def _put_back(dead: list[tuple[gs.Graph, gs.Node, list, list]]) -> None:
    """Return the source's dead nodes, which the rewrite's cleanup dropped, connected as they were
    and in their sorted order, after every node of their graph (nothing reads them). What they read
    is still there: a site is only matched where its inner tensors have no reader outside it."""
    for owner, node, inputs, outputs in dead:
        node.inputs.clear()
        node.outputs.clear()
        node.inputs.extend(inputs)
        node.outputs.extend(outputs)
        owner.nodes.append(node)


def _site_input(neuron_input: float, affine: tuple[float, float] | None) -> float:
    """The site input at which the set reads `neuron_input` (undoing gain x + shift)."""
    gain, shift = affine or (1.0, 0.0)
    return (neuron_input - shift) / gain


def apply_activations(graph: gs.Graph, sites, sets: Mapping[str, ActivationParams], opset: int) -> list[dict]:
    """Replace every activation site with its function's set; one report entry per site."""
    names = NamePool(graph)
    reports = []
    for site in sites:
        own = sets[site.function]
        inserted = replace_activation(site, own, opset, names)
        reports.append(
            {
                "name": site.name,
                "graph": graph_label(site.graph, graph),
                "function": site.function,
                "form": site.form,
                "input": site.x.name,
                "input_scale": site.scale,
                "input_map": list(site.affine) if site.affine else None,
                "output": site.output.name,
                "range": [_site_input(v / site.scale, site.affine) for v in own.input_range],
                "steps": own.steps,
                "set": own.function,  # gelu_gate: the neuron computes the gate, the op times x the site
                "replaced_with": inserted,
            }
        )
    _toposorted(graph.cleanup(remove_unused_graph_inputs=False))
    return reports


def finish(graph: gs.Graph, prepared: Prepared, params: NeuronParams, inline: bool) -> onnx.ModelProto:
    """The rewritten light model: exported, annotated as the source was, with the spiking
    functions and metadata, optionally inlined, and checked."""
    light = prepared.light
    new = gs.export_onnx(graph, do_type_check=False)
    _keep_default_domain_import(light, new)
    restore_opaque(new, prepared.opaque)
    _keep_annotations_of(light, new)
    _keep_node_notes(light, new)
    new.ir_version = max(light.ir_version, new.ir_version)
    del new.functions[:]  # take the functions as they were, not as graphsurgeon re-exported them
    new.functions.extend(f for f in light.functions if f.domain != DOMAIN)
    _attach_functions(new, params.steps, prepared.opset, _activation_steps(new))
    spell_out_defaults(new)
    new.metadata_props.extend(light.metadata_props)
    props = {p.key: p.value for p in new.metadata_props}
    onnx.helper.set_model_props(new, {**props, "sit_onnx.params": params.method, "sit_onnx.steps": str(params.steps)})
    if inline:
        new = inline_spiking_functions(new)
    prepared.notes.extend(validate_model(new, prepared.source_check, dropped_before=prepared.dropped))
    return new


def _left_alone(prepared: Prepared, options: RewriteOptions, label: str) -> list[dict]:
    left = [asdict(a) for a in prepared.attention if not a.expanded]
    if left and options.strict:
        raise SitOnnxError(f"{label}: {attention_summary(left)} (--strict)")
    return left


def rewrite_model(
    model: onnx.ModelProto,
    options: RewriteOptions = RewriteOptions(),
    source: str | None = None,
    in_place: bool = False,
    site_params: Mapping[str, NeuronParams] | None = None,
    activation_sets: Mapping[str, ActivationParams] | None = None,
) -> tuple[onnx.ModelProto, RewriteReport]:
    """Convert the softmax sites of `model`; a copy unless `in_place` (then `model` itself becomes
    the result). `site_params` (from per-site calibration) overrides the set per site name,
    `activation_sets` (calibrated) the set per activation function.
    prepare -> find -> select -> apply -> finish -> report."""
    if not isinstance(model, onnx.ModelProto):
        paths = " (rewrite_file reads and writes files)" if isinstance(model, (str, bytes, os.PathLike)) else ""
        raise SitOnnxError(f"rewrite_model takes an onnx.ModelProto, got {type(model).__name__}{paths}")
    params, fuse = _checked_options(options)
    activation_sets = _activation_sets(options, params.steps, activation_sets)
    _check_site_params(site_params or {}, params)
    label = source or "model"
    already = _existing_steps(model)
    if already is not None and already != params.steps:
        raise SitOnnxError(
            f"{label}: already holds SpikingExp with K={already}; convert the rest with --steps {already}"
        )
    prepared = prepare(model, label, in_place)
    left_alone = _left_alone(prepared, options, label)
    graph = _searchable_graph(prepared)
    misses: list[NearMiss] = []
    sites = find_sites(graph, misses)
    activation_misses: list[ActivationMiss] = []
    activation_sites = find_activation_sites(graph, set(activation_sets), activation_misses)
    if not sites and not activation_sites:
        extra = f"; {attention_summary(left_alone)}" if left_alone else ""
        extra += "".join(f"; {m.op} {m.name!r} is no softmax site: {m.reason}" for m in misses[:3])
        extra += f"; it was converted before (K={already})" if already is not None else ""
        wanted = f" nor {'/'.join(activation_sets)} activation" if activation_sets else ""
        raise SitOnnxError(f"{label}: no Softmax (nor Exp→ReduceSum→Div softmax){wanted} to convert{extra}")
    reasons = select_sites(sites, options)
    dead = _dead_nodes(graph, [*sites, *activation_sites], prepared.model)
    reports = apply(graph, sites, reasons, prepared, params, options.softmax_options(), fuse, site_params)
    activation_reports = apply_activations(graph, activation_sites, activation_sets, prepared.opset)
    _put_back(dead)
    new = finish(graph, prepared, params, options.inline)
    report = RewriteReport(
        input=source,
        output=None,
        source_opset=prepared.source_opset,
        opset=prepared.opset,
        steps=params.steps,
        params=str(options.params_file) if options.params_file else _shipped_label(params),
        options={**{k: _plain(v) for k, v in asdict(options).items()}, "fuse": fuse},
        sites=reports,
        ops_before=dict(count_ops(model.graph)),
        ops_after=dict(count_ops(new.graph)),
        inlined=options.inline,
        notes=prepared.notes
        + _option_notes(options, params, fuse)
        + _calibration_notes(reports, site_params)
        + _coarse_logit_notes(sites),
        attention=[asdict(a) for a in prepared.attention],
        near_misses=[asdict(m) for m in misses],
        unproven_annotations=prepared.unproven,
        activations=activation_reports,
        activation_misses=[asdict(m) for m in activation_misses],
    )
    return write_back(prepared.model, new, prepared.aside), report


def _activation_sets(options: RewriteOptions, steps: int, calibrated) -> dict[str, ActivationParams]:
    """The asked-for functions' sets: calibrated ones where given, else the options' own."""
    sets = {**options.activation_sets(steps), **(calibrated or {})}
    if set(sets) != set(options.activations):
        raise SitOnnxError(f"calibrated activation sets for {sorted(sets)}; asked for {list(options.activations)}")
    k = options.activation_k(steps)
    for name, found in sets.items():
        if found.steps != k:
            raise SitOnnxError(
                f"the {name} set has K={found.steps}; the activations take K={k} "
                "(--activation-steps, by default the softmax set's K)"
            )
    return sets


def _calibration_notes(reports, site_params) -> list[str]:
    if not site_params:
        return []
    own = sum(1 for r in reports if r.converted and r.name in site_params)
    return [f"{own} of {sum(r.converted for r in reports)} converted sites carry their own calibrated parameter set"]


def _check_site_params(site_params: Mapping[str, NeuronParams], params: NeuronParams) -> None:
    """Every per-site set has the model's K (the function bodies are per K) and one neuron."""
    for name, own in site_params.items():
        if own.steps != params.steps or own.neurons != 1:
            raise SitOnnxError(
                f"site {name!r}: its parameter set has K={own.steps} x {own.neurons} neurons; "
                f"every site needs K={params.steps}, one neuron"
            )


def _shipped_label(params: NeuronParams) -> str:
    objective = params.meta.get("objective", "exp-rmse")
    return f"shipped K={params.steps} on {list(params.input_range)}, fitted to {objective}"


MAX_TIME_STEPS = 2**63 - 1  # SpikingNorm's time_steps is an int64 attribute


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _plain(value):
    """An option as JSON writes it: tuples as lists, paths (a Python caller's pathlib ones) as text."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _check_option_types(options: RewriteOptions) -> None:
    """RewriteOptions built in Python, not by the CLI's parsers: a wrong type had slipped through
    (`first=-1` converted no site, `activations="gelu"` read 'g', `shift="yes"` a ValueError)."""
    if not isinstance(options, RewriteOptions):
        raise SitOnnxError(f"options must be a RewriteOptions, got {type(options).__name__}")
    ints = {"steps": (options.steps, 1), "time_steps": (options.time_steps, 0)}
    ints |= {"first": (options.first, 0), "activation_steps": (options.activation_steps, 1)}
    for name, (value, low) in ints.items():
        if not (value is None and name in ("first", "activation_steps")) and not (_is_int(value) and value >= low):
            raise SitOnnxError(f"RewriteOptions.{name} must be an int >= {low}, got {value!r}")
    if options.time_steps > MAX_TIME_STEPS:  # it had ended in onnx's "Value out of range" as an internal error
        raise SitOnnxError(
            f"RewriteOptions.time_steps must be at most {MAX_TIME_STEPS} (an ONNX int attribute),"
            f" got {options.time_steps}"
        )
    flags = {"sigmoid": options.sigmoid, "shift": options.shift, "inline": options.inline, "strict": options.strict}
    flags |= {"attention_only": options.attention_only, "fuse": options.fuse}
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)) and not (value is None and name == "fuse"):
            raise SitOnnxError(f"RewriteOptions.{name} must be True or False, got {value!r}")
    for name, kinds in (("nodes", str), ("activations", str), ("activation_params", (str, os.PathLike))):
        value = getattr(options, name)
        if isinstance(value, (str, bytes, os.PathLike)) or not all(isinstance(v, kinds) for v in value):
            what = "paths" if name == "activation_params" else "strings"
            raise SitOnnxError(f"RewriteOptions.{name} must be a tuple of {what}, got {value!r}")
    if options.params_file is not None and not isinstance(options.params_file, (str, os.PathLike)):
        raise SitOnnxError(f"RewriteOptions.params_file must be a path or None, got {options.params_file!r}")


def check_options(options: RewriteOptions) -> None:
    """The options and the files they name, checked before a model is read: a large one takes
    seconds to load before a missing --params file was named."""
    _checked_options(options)
    for path in options.activation_params:
        load_activation(path)


def _checked_options(options: RewriteOptions) -> tuple[NeuronParams, bool]:
    """The parameter set, and whether to fuse; refuses options that cannot go together."""
    _check_option_types(options)
    params = options.neuron_params()
    if options.fuse and params.neurons > 1:
        raise SitOnnxError(f"--fuse takes a single-neuron parameter set; this one is an ensemble of {params.neurons}")
    if options.activation_steps is not None and not options.activations:
        raise SitOnnxError("--activation-steps sets the K of converted activations; --activations names none")
    if options.activation_form != "direct" and not options.activations:
        raise SitOnnxError(
            f"--activation-form {options.activation_form} shapes converted activations; --activations names none"
        )
    return params, params.neurons == 1 if options.fuse is None else options.fuse


COARSE_LOGIT_STEP = 16.0  # logits this far apart weigh e^-16 ~ 1e-7 of each other: uniform or one-hot


def _coarse_logit_notes(sites: list[SoftmaxSite]) -> list[str]:
    """Sites whose logits an int8 model dequantizes in steps so wide that its softmax is uniform or
    one-hot whatever computes it: the quantizer calibrated a masked (float32-lowest or -inf) logit.
    A conversion there agrees with the original trivially, which the user should know."""
    notes = []
    for site in sites:
        producer = site.logits.inputs[0] if site.logits.inputs else None
        if producer is None or producer.op != "DequantizeLinear" or len(producer.inputs) < 2:
            continue
        scale = constant_value(producer.inputs[1])
        step = float(np.max(np.abs(scale))) if scale is not None and scale.size else 0.0
        if not step < COARSE_LOGIT_STEP:  # NaN and inf too
            notes.append(
                f"site {site.name!r}: its logits are dequantized in steps of {step:g}, so the int8 model's "
                "softmax there is uniform or one-hot whatever computes it (its quantizer calibrated a masked "
                "logit: calibrate without padding or masks)"
            )
    return notes


def _option_notes(options: RewriteOptions, params: NeuronParams, fuse: bool) -> list[str]:
    notes = []
    if options.fuse is None and not fuse:
        notes.append(f"an ensemble of {params.neurons} neurons cannot fuse: written as the explicit chain")
    if options.shift and params.input_range[1] > 0.5:
        notes.append(
            "max-shift feeds SI-exp values <= 0, but this parameter set is fitted on "
            f"{list(params.input_range)}; a set fitted on [-R, 0] fits better"
        )
    return notes


def _attention_tensors(model: onnx.ModelProto) -> set[str]:
    """The tensors attention ops read or write, in every graph."""
    return {
        name for g in graph_protos(model.graph) for n in g.node if is_attention_op(n) for name in (*n.input, *n.output)
    }


def _with_upstream(model: onnx.ModelProto, names: set[str]) -> set[str]:
    """`names` and every tensor they are computed from, in every graph (a branch's outer names
    traced in the graph that makes them)."""
    found = set(names)
    graphs = list(graph_protos(model.graph))
    makers = [{out: node for node in graph.node for out in node.output if out} for graph in graphs]
    grown = True
    while grown:
        grown = False
        for maker in makers:
            todo = [name for name in found if name in maker]
            while todo:
                node = maker.pop(todo.pop(), None)
                new = {name for name in node.input if name and name not in found} if node is not None else set()
                found |= new
                todo.extend(new)
                grown = grown or bool(new)
    return found


def _keep_annotations_of(source: onnx.ModelProto, new: onnx.ModelProto) -> None:
    """Keep only the shape annotations the source model had, graph by graph.

    The shapes inferred to find the sites are not written out: onnxruntime fuses differently
    when it knows more shapes (e.g. Add+LayerNormalization into a slower SkipLayerNormalization),
    and a converted model should differ from its original at the softmax sites alone. Inside If
    and Loop bodies, onnx's inference (data propagation) can also be wrong: it gave a T5 decoder's
    branch outputs dims of 0 and 1, which onnxruntime then enforced and failed on.
    """
    sources = dict(graphs_by_place(source.graph))
    for place, graph in graphs_by_place(new.graph):
        was = sources.get(place, onnx.GraphProto())  # a graph the source lacks had no annotations
        had = {info.name: info for info in was.value_info}
        declared = {info.name: info for info in list(was.input) + list(was.output)}
        kept = [had[info.name] for info in graph.value_info if info.name in had]
        del graph.value_info[:]
        graph.value_info.extend(kept)
        for values in (graph.input, graph.output):  # inputs and outputs exactly as the source declared them
            restored = [declared.get(info.name, info) for info in values]
            if values is graph.input:  # with those graphsurgeon drops: an initializer a user may override
                restored = [*was.input, *(info for info in restored if info.name not in declared)]
            del values[:]
            values.extend(restored)


def _keep_default_domain_import(source: onnx.ModelProto, new: onnx.ModelProto) -> None:
    """graphsurgeon declares each node domain it finds undeclared, at version 1: a node spelling the
    default domain "ai.onnx" in a model that imports it as "" got ("ai.onnx", 1) beside ("", 20),
    and onnxruntime then read every standard op at opset 1 (a Cast's `saturate` unrecognised: the
    source ran, the rewrite did not load). The default domain is imported as the source imports it."""
    declared = {entry.domain for entry in source.opset_import}
    kept = [entry for entry in new.opset_import if entry.domain in declared or entry.domain not in DEFAULT_DOMAINS]
    del new.opset_import[:]
    new.opset_import.extend(kept)


def _keep_node_notes(source: onnx.ModelProto, new: onnx.ModelProto) -> None:
    """What graphsurgeon drops from a node, put back from the source node that wrote the same first
    output: its doc_string and metadata_props (an exporter's stack trace and module path, which the
    op replacing a softmax site inherits) and, for the same op, its function overload; and a
    subgraph's own doc_string and metadata_props."""
    sources = dict(graphs_by_place(source.graph))
    for place, graph in graphs_by_place(new.graph):
        was_graph = sources.get(place, onnx.GraphProto())
        # a branch's notes, as the main graph's; each field set only where the source has it (an
        # empty field written out still changes the protobuf's bytes)
        if was_graph.doc_string and not graph.doc_string:
            graph.doc_string = was_graph.doc_string
        if not graph.metadata_props:
            graph.metadata_props.extend(was_graph.metadata_props)
        writers = {n.output[0]: n for n in was_graph.node if n.output and n.output[0]}
        for node in graph.node:
            was = writers.get(node.output[0]) if node.output else None
            if was is None:
                continue
            if was.doc_string and not node.doc_string:
                node.doc_string = was.doc_string
            if not node.metadata_props:
                node.metadata_props.extend(was.metadata_props)
            if was.overload and not node.overload and (node.op_type, node.domain) == (was.op_type, was.domain):
                node.overload = was.overload


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _activation_steps(model: onnx.ModelProto) -> int | None:
    """K of the model's SpikingActivation nodes (this pass's or an earlier one's), None without any:
    their function body unrolls one K, so the nodes must agree."""
    found = {
        len(next((a.floats for a in node.attribute if a.name == "thresholds"), []))
        for graph in graph_protos(model.graph)
        for node in graph.node
        if node.domain == DOMAIN and node.op_type == SPIKING_ACTIVATION
    }
    if len(found) > 1:
        raise SitOnnxError(
            f"SpikingActivation nodes with K = {', '.join(map(str, sorted(found)))} in one model; "
            "the activations of a model share one K (convert the rest with that --activation-steps)"
        )
    return found.pop() if found else None


def _attach_functions(model: onnx.ModelProto, steps: int, opset: int, activation_steps: int | None = None) -> None:
    model.functions.extend(spiking_functions(steps, opset, activation_steps))
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
