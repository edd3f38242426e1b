"""Find the softmax sites of a graph through the matcher registry (graph/matchers/): Softmax
nodes and softmax written out by hand.

A site records what the rewrite needs (input, output, axis) and what the report shows (name,
which graph, which pattern). Subgraphs (If/Loop/Scan bodies) are searched too; their sites name
the graph they live in. A matcher's refusal with a reason is a near miss.
"""

from __future__ import annotations

from collections import Counter

import onnx_graphsurgeon as gs

from sit_onnx.graph.matchers import MATCHERS
from sit_onnx.graph.matchers.base import (
    DECOMPOSED,
    DECOMPOSED_SHIFTED,
    SOFTMAX,
    NearMiss,
    SoftmaxSite,
    constant_value,
)
from sit_onnx.graph.site_roles import site_role
from sit_onnx.graph.walk import graph_label, walk_graphs

__all__ = ["DECOMPOSED", "DECOMPOSED_SHIFTED", "SOFTMAX", "NearMiss", "SoftmaxSite", "constant_value", "find_sites"]


def find_sites(graph: gs.Graph, misses: list[NearMiss] | None = None) -> list[SoftmaxSite]:
    """Every softmax site, in graph order (graphs already topologically sorted). Nodes that
    almost form a softmax are appended to `misses` with the reason."""
    sites = []
    for sub in walk_graphs(graph):
        for node in sub.nodes:
            for matcher in MATCHERS:
                found = matcher(sub, node)
                if found is None:
                    continue
                if found.site is not None:
                    found.site.role = site_role(found.site.output)
                    sites.append(found.site)
                elif found.reason is not None and misses is not None:
                    misses.append(NearMiss(node.name, graph_label(sub, graph), found.reason, node.op))
                break
    _name_apart(sites)
    return sites


def _name_apart(sites: list[SoftmaxSite]) -> None:
    """Give a site whose node has no name, or a name another node of its graph has too, a name of its
    own: the node's (or "softmax") and the tensor it writes, which is unique. Per-site calibration
    keys its parameter sets by site name, and `--nodes` selects by it: two unnamed softmaxes (as
    onnx's helpers write them) shared one set, the last one calibrated, and could not be selected.
    One name in two branches of an If stays: the same module, traced once per branch (a merged
    decoder's), takes the same set in both."""
    counts = Counter((id(s.graph), s.name) for s in sites)
    for site in sites:
        if not site.name or counts[(id(site.graph), site.name)] > 1:
            site.name = f"{site.name or 'softmax'}@{site.output.name}"
