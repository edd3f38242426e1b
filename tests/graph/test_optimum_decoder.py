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


def test_a_partly_converted_decoder_takes_the_rest_then_says_it_was_converted(converted, tmp_path):
    """A model with both local functions (ours) and an If: graphsurgeon's sort of the function list
    recursed without end there, so a decoder converted with --first could not take the rest, and
    `rewrite` or `energy` given a converted one ended in an internal error (RecursionError)."""
    from click.testing import CliRunner

    from sit_onnx.cli import main

    source, whole, _ = converted
    half, first = rewrite_model(source, RewriteOptions(first=2))
    rest, second = rewrite_model(half, RewriteOptions())
    assert len(first.converted) == len(second.converted) == 2
    assert {(s.graph, s.name) for s in first.converted}.isdisjoint((s.graph, s.name) for s in second.converted)
    for use_cache in (False, True):
        feeds = _feeds(source, use_cache)
        for a, b in zip(run(rest, feeds), run(whole, feeds)):
            np.testing.assert_array_equal(a, b)
    path = tmp_path / "decoder.sit.onnx"
    onnx.save(whole, str(path))
    again = tmp_path / "again.onnx"
    for command in (["rewrite", str(path), "-o", str(again)], ["energy", str(path), "--dataset", "digits"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr == (
            f"Error: {path}: no Softmax (nor Exp→ReduceSum→Div softmax) to convert; it was converted before (K=12)\n"
        )
    assert not again.exists()
