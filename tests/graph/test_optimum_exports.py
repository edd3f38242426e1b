"""Hugging Face's own exporter, end to end: tiny random-weight models exported by optimum-onnx as
users get them (a KV-cache decoder with GQA, an encoder-decoder whose decoder's two forms are
merged into the branches of an If, a ViT), each file rewritten and then checked by `sit-onnx
compare` on the inputs it generates itself (the cache's `past_sequence_length + sequence_length`,
the ViT's image size read from the graph). Found with these: branch outputs given wrong dims by
onnx's inference, masks of the wrong length, 16-channel images."""

import json
import warnings

import onnx
import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions
from sit_onnx.graph.convert_file import rewrite_file
from sit_onnx.graph.walk import graph_protos

torch = pytest.importorskip("torch", reason="torch builds the models")
transformers = pytest.importorskip("transformers", reason="transformers defines them")
pytest.importorskip("optimum.exporters.onnx", reason="optimum-onnx exports them (a dev dependency)")
pytestmark = pytest.mark.slow

SMALL = {"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 64}
SEQ2SEQ = {
    "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "vocab_size": 64,
    "max_position_embeddings": 64, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    "decoder_start_token_id": 2,
}  # fmt: skip
# name: (config, model class, optimum's task, {file: softmax sites})
MODELS = {
    "llama": (
        lambda: transformers.LlamaConfig(**SMALL, vocab_size=64, num_key_value_heads=2, max_position_embeddings=64),
        "LlamaForCausalLM", "text-generation-with-past", {"model.onnx": 2},
    ),
    "bart": (
        lambda: transformers.BartConfig(**SEQ2SEQ), "BartForConditionalGeneration", "text2text-generation-with-past",
        {"encoder_model.onnx": 1, "decoder_model_merged.onnx": 4},
    ),
    "vit": (
        lambda: transformers.ViTConfig(**SMALL, image_size=32, patch_size=8), "ViTForImageClassification",
        "image-classification", {"model.onnx": 2},
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request, tmp_path_factory):
    from optimum.exporters.onnx import main_export

    config, model_class, task, files = MODELS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    getattr(transformers, model_class)(config()).eval().save_pretrained(folder / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(folder / "hf"), output=str(folder / "onnx"), task=task)
    return folder, files


def test_every_file_converts_every_site_and_compares_on_its_own_inputs(exported):
    folder, files = exported
    for name, sites in files.items():
        source, target = folder / "onnx" / name, folder / f"sit-{name}"
        report = rewrite_file(source, target, RewriteOptions())
        assert len(report.converted) == len(report.sites) == sites, name
        converted = onnx.load(str(target))
        assert not any(n.op_type == "Softmax" for g in graph_protos(converted.graph) for n in g.node)
        # random weights make near-ties of a decoder's 64 logits: one row of 64 may flip
        arguments = ["compare", str(source), str(target), "--json", "--min-agreement", "0.95"]
        result = CliRunner().invoke(main, arguments)
        record = json.loads(result.stdout)
        assert result.exit_code == 0 and record["passed"], (name, result.output[-2000:])
        assert all(o["cosine"] > 0.999 for o in record["outputs"] if o["shape"] and 0 not in o["shape"]), name
        assert record["inputs"].startswith("generated inputs:")
