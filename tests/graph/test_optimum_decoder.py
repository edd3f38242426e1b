"""A real exporter's KV-cache decoder: optimum's merged T5 decoder (tests/data, made by
make_optimum_t5.py), whose first-step and cached forms are the two branches of one If, with the
same tensor names in both. onnx's shape inference, data propagation on, gives some branch outputs
wrong fixed dims there ([1, 4, 4, 4] and [0, 4, 1, 4] for [batch, 4, length, 4]); written out,
onnxruntime enforced them and the converted model failed in the first-step branch."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.walk import graphs_by_place
from tests.helpers import run

MERGED = Path(__file__).resolve().parents[1] / "data" / "optimum_t5_decoder_merged.onnx"


def _feeds(model: onnx.ModelProto, use_cache: bool) -> dict:
    rng = np.random.default_rng(0)
    batch, length, past, encoded = 2, 3, 5, 7
    feeds = {
        "encoder_attention_mask": np.ones((batch, encoded), np.int64),
        "input_ids": rng.integers(0, 32, (batch, 1 if use_cache else length)).astype(np.int64),
        "encoder_hidden_states": rng.normal(0, 1, (batch, encoded, 16)).astype(np.float32),
        "use_cache_branch": np.array([use_cache]),
    }
    for name in (i.name for i in model.graph.input if i.name.startswith("past_key_values")):
        feeds[name] = rng.normal(0, 1, (batch, 4, encoded if ".encoder." in name else past, 4)).astype(np.float32)
    return feeds


@pytest.fixture(scope="module")
def converted():
    source = onnx.load(str(MERGED))
    new, report = rewrite_model(source, RewriteOptions())
    return source, new, report


def test_every_site_of_both_branches_converts(converted):
    _, _, report = converted
    assert len(report.converted) == 4
    assert sorted(site.graph for site in report.converted) == ["no_past", "no_past", "with_past", "with_past"]


def test_branch_declarations_are_the_sources(converted):
    source, new, _ = converted
    was = dict(graphs_by_place(source.graph))
    now = dict(graphs_by_place(new.graph))
    assert set(now) == set(was) and len(now) == 3
    for place, graph in now.items():
        for field in ("input", "output"):
            assert [v.SerializeToString() for v in getattr(graph, field)] == [
                v.SerializeToString() for v in getattr(was[place], field)
            ], (place, field)


@pytest.mark.parametrize("use_cache", [False, True])
def test_both_branches_run_and_keep_the_decoders_output(converted, use_cache):
    source, new, _ = converted
    feeds = _feeds(source, use_cache)
    want, got = run(source, feeds), run(new, feeds)
    names = [o.name for o in source.graph.output]
    for name, a, b in zip(names, want, got):
        assert a.shape == b.shape, name
        if a.size == 0:  # the cached branch hands back the encoder's keys as empty tensors
            continue
        cosine = float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine > 0.999, (name, cosine)
    logits = names.index("logits")
    assert 1e-6 < np.abs(want[logits] - got[logits]).max() < 0.2  # converted, and near
