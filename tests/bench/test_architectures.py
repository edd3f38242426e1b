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


@pytest.mark.parametrize(
    "name, how, sites, activations, min_cosine",
    [
        ("bart", "torchscript-17", "6/6", {"gelu": 4}, 0.9999),  # encoder, decoder and cross attention
        ("whisper", "dynamo", "6/6", {"gelu": 6}, 0.98),  # log-mel features in (TorchScript fails on it)
        ("wav2vec2", "torchscript-17", "2/2", {"gelu": 5}, 0.99),  # a raw waveform: its conv stem's GELUs too
        ("layoutlm", "torchscript-17", "2/2", {"gelu": 2}, 0.9999),
    ],
)
def test_rows_of_other_input_kinds(tmp_path, name, how, sites, activations, min_cosine):
    """Encoder-decoders, speech and layout models take other inputs than ids and pixels: each
    family exports with what its kind feeds it and every softmax site converts."""
    bench = _bench()
    path, feeds, kind = bench.export(name, how, tmp_path)
    model = bench.post_pass(path, kind, "plain", feeds)
    row = bench.check(model, feeds)
    assert row["softmax"] == sites and row["attention left"] == 0
    assert row["activations"] == activations and row["activation misses"] == {}
    assert row["cosine"] > min_cosine


def test_layout_boxes_are_ordered_corners():
    """LayoutLM embeds x1, y1, x2, y2 on a 0-1000 grid; a box whose corners cross is no box."""
    import torch

    (ids, boxes, mask), names = _bench()._inputs("layout", torch)
    assert names == ["input_ids", "bbox", "attention_mask"]
    assert boxes.shape == (*ids.shape, 4) and mask.shape == ids.shape
    assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()
    assert boxes.min() >= 0 and boxes.max() <= 1000


@pytest.mark.parametrize("kind", ["text", "causal", "seq2seq"])
def test_text_rows_pad_the_second_example(kind):
    """The second example's last four tokens are padding: masked attention rows are what the
    conversion must keep (a row of -inf logits but one)."""
    import torch

    values, names = _bench()._inputs(kind, torch)
    feeds = dict(zip(names, values))
    assert feeds["attention_mask"][0].all() and feeds["attention_mask"][1].tolist() == [1] * 8 + [0] * 4
    assert feeds["input_ids"].min() >= 3 and feeds["input_ids"].max() < 100  # no special ids, in the vocab
    assert ("decoder_input_ids" in feeds) == (kind == "seq2seq")


@pytest.mark.parametrize(
    "stem, kind, fusions",
    [("t5", "seq2seq", "t5"), ("bart", "seq2seq", "bart"), ("whisper", "speech2seq", "bart"),
     ("t5-encoder", "text", "bert"), ("bert", "text", "bert"), ("vit", "image", "clip"), ("levit", "image64", "clip")],
)  # fmt: skip
def test_optimizer_type_by_family(stem, kind, fusions):
    """onnxruntime's optimizer fuses an encoder-decoder by its own rules, not BERT's."""
    assert _bench().optimizer_type(Path(f"/x/{stem}.onnx"), kind) == fusions
