"""What a rewrite did, site by site: the library returns it, the CLI prints it."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import onnx

from sit_onnx.graph.walk import graph_protos


@dataclass
class SiteReport:
    name: str
    graph: str
    pattern: str
    axis: int | None
    semantics: str
    converted: bool
    replaced_with: list[str] = field(default_factory=list)
    reason: str | None = None
    logits: str | None = None  # tensor names around the site, to inspect it in the converted graph
    output: str | None = None
    role: str | None = None  # attention, or other (a classifier's, a router's, a spline's softmax)


@dataclass
class RewriteReport:
    input: str | None
    output: str | None
    source_opset: int
    opset: int
    steps: int
    params: str
    options: dict
    sites: list[SiteReport] = field(default_factory=list)
    ops_before: dict = field(default_factory=dict)
    ops_after: dict = field(default_factory=dict)
    inlined: bool = False
    notes: list[str] = field(default_factory=list)
    attention: list[dict] = field(default_factory=list)  # attention ops met: expanded, or left alone and why
    near_misses: list[dict] = field(default_factory=list)  # Exp/Softmax nodes that are no site, and why not
    # the source's annotations whose fixed dims no inference confirms: dropped, as the standard ops the
    # rewrite puts in would be shaped by them ("'name' [dims]")
    unproven_annotations: list[str] = field(default_factory=list)
    calibration: list[dict] = field(default_factory=list)  # per-site calibration: each site's rows and chosen set
    activations: list[dict] = field(default_factory=list)  # activation sites converted (rewrite --activations)
    activation_misses: list[dict] = field(default_factory=list)  # nodes of an asked-for activation left alone, and why
    activation_calibration: list[dict] = field(default_factory=list)  # per function: its inputs and chosen set

    @property
    def attention_left_alone(self) -> list[dict]:
        return [a for a in self.attention if not a["expanded"]]

    @property
    def converted(self) -> list[SiteReport]:
        return [s for s in self.sites if s.converted]

    @property
    def skipped(self) -> list[SiteReport]:
        return [s for s in self.sites if not s.converted]

    def to_dict(self) -> dict:
        record = asdict(self)
        record["converted_count"] = len(self.converted)
        record["skipped_count"] = len(self.skipped)
        return record


def attention_summary(left: list[dict]) -> str:
    """'K attention op(s) left as they were (why)', each distinct reason once."""
    reasons = sorted({a["reason"] for a in left})
    return f"{len(left)} attention op(s) left as they were ({'; '.join(reasons)})"


def count_ops(graph: onnx.GraphProto) -> Counter:
    """Op types in a graph and all its subgraphs, keyed 'domain::Op' outside the default domain."""
    counts = Counter()
    for g in graph_protos(graph):
        for node in g.node:
            counts[f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
    return counts
