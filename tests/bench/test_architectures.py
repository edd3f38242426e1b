"""bench/architectures.py runs: one family, plain and through onnxruntime's int8 quantizer, gives
the row the README reads (a refactor of the activation names once broke every row of it)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch exports the models")
pytest.importorskip("transformers", reason="transformers defines the families")
pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "architectures.py"


def _bench():
    spec = importlib.util.spec_from_file_location("architectures", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("post", ["plain", "int8-dynamic", "int8-static"])
def test_a_bert_row(tmp_path, post):
    bench = _bench()
    path, feeds, kind = bench.export("bert", "torchscript-17", tmp_path)
    feeds = bench.feeds_for(post, feeds)
    assert (feeds["attention_mask"] == 0).any() == (post == "plain")  # int8: calibrated unpadded
    model = bench.post_pass(path, kind, post, feeds)
    quantized = {"plain": "Softmax", "int8-dynamic": "MatMulInteger", "int8-static": "QLinearSoftmax"}[post]
    assert any(n.op_type == quantized for n in model.graph.node)
    row = bench.check(model, feeds)
    assert row["softmax"] == "2/2" and row["attention left"] == 0
    if post != "int8-static":  # there the quantizer splits GELU's Erf form with QuantizeLinear
        assert row["activations"] == {"gelu": 2} and row["activation misses"] == {}
    assert row["cosine"] > 0.999
