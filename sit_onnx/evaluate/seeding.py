"""Models that draw random numbers, compared run for run: every random op seeded alike.

A VITS voice (Piper's, measured on en_US-joe-medium) draws its duration and latent noise with
RandomNormalLike and no seed. onnxruntime then seeds each kernel by the order it creates them, so a
reference and a candidate drew the same noise only while their node lists matched one to one: the
noise floor's model (three nodes per site) drew other noise and read cosine 0.888 against a
conversion's 0.99994. Seeded from each op's output name, the same op draws the same noise in the
reference, the candidate and the floor, whatever else their graphs hold.
"""

from __future__ import annotations

import tempfile
import zlib
from collections import Counter
from pathlib import Path

import onnx
from onnx import helper

from sit_onnx.graph.load import load_model
from sit_onnx.graph.save import needs_external_data, save_model
from sit_onnx.graph.walk import graph_protos

RANDOM_OPS = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli")


def unseeded_random_ops(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The standard random ops, in every graph, that draw from no fixed seed."""
    return [
        node
        for graph in graph_protos(model.graph)
        for node in graph.node
        if node.domain in ("", "ai.onnx")
        and node.op_type in RANDOM_OPS
        and not any(a.name == "seed" for a in node.attribute)
    ]


def seed_random_ops(model: onnx.ModelProto) -> None:
    """Give each unseeded random op a seed from its output's name (in place): the same op seeds alike
    in every model that keeps its name, as a rewrite does."""
    for node in unseeded_random_ops(model):
        seed = zlib.crc32(node.output[0].encode()) % 2**24  # every random op has its one output
        node.attribute.append(helper.make_attribute("seed", float(seed)))


def describe_random_ops(nodes: list[onnx.NodeProto]) -> str:
    counts = Counter(n.op_type for n in nodes)
    return ", ".join(f"{count} {op}" for op, count in sorted(counts.items()))


def seeded_session(path: Path, spec, label: str | None = None):
    """A session for the model at `path` with its random ops seeded (the file is not changed); a
    model over 2 GB goes through a temporary folder, as a session cannot take it as one protobuf."""
    model = load_model(path)
    seed_random_ops(model)
    return proto_session(model, spec, label or str(path))


def proto_session(model: onnx.ModelProto, spec, label: str):
    """A session for an in-memory model, through a temporary folder where it is too large for one
    protobuf. The folder goes once the session exists: onnxruntime reads or maps the external
    weights when it builds the session, and a mapped file outlives its name on Linux and macOS."""
    from sit_onnx.runtime import make_session

    if not needs_external_data(model):
        return make_session(model, spec, label)
    with tempfile.TemporaryDirectory(prefix="sit-onnx-session-", ignore_cleanup_errors=True) as folder:
        source = Path(folder) / "model.onnx"
        save_model(model, source, external=True)
        return make_session(source, spec, label)
