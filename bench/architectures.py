"""Coverage across Transformer architectures: tiny random-weight models of transformers' families
(encoders, decoders, encoder-decoders, vision, speech, layout, hybrids; no download), exported by
TorchScript (opset 17) and dynamo, optionally through onnxruntime's transformer optimizer, to
float16 or to int8 (onnxruntime's quantizer: static QOperator, dynamic after the optimizer); each
rewritten with every activation asked for, then the original and the converted model run on the same inputs.

Prints per model: softmax sites converted / found, attention ops left alone, activations converted
by function, activation sites left alone (and why), cosine of the outputs. Random weights make
activation inputs tiny (|x| < 0.5), where an FS neuron's absolute error is large against the values:
the cosine says that the graph still computes the model, not what a trained model would lose
(for that: bench/fidelity.py on pretrained weights).

    python bench/architectures.py [--exports torchscript-17 dynamo] [--only bert clip ...] [--ort] [--float16] [--int8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ort_tools import int8, quietly, working_in  # noqa: E402
from sit_onnx.graph.convert import RewriteOptions, rewrite_model  # noqa: E402
from sit_onnx.neurons.activation import SITE_FUNCTIONS  # noqa: E402
from sit_onnx.runtime.library import get_library_path, library_available  # noqa: E402

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}


TEXT = {**SMALL, "vocab_size": 100}
IMAGE = {**SMALL, "image_size": 32, "patch_size": 8}
SEQ2SEQ = {
    "vocab_size": 100,
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "max_position_embeddings": 64,
    "pad_token_id": 1,
    "decoder_start_token_id": 2,
    "eos_token_id": 2,
    "bos_token_id": 0,
}
T5 = {"vocab_size": 100, "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4}
AUDIO = {
    **SMALL,
    "conv_dim": [16, 16],
    "conv_kernel": [10, 3],
    "conv_stride": [5, 2],
    "num_feat_extract_layers": 2,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
RESNET = {
    "model_type": "resnet",
    "embedding_size": 16,
    "hidden_sizes": [16, 32, 48, 64],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
    "out_features": ["stage4"],
}
DETR = {
    "use_timm_backbone": False,
    "use_pretrained_backbone": False,
    "backbone_config": RESNET,
    "d_model": 64,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "num_queries": 10,
}
# name: (transformers' config and model classes, the config's arguments, the inputs it takes)
FAMILIES = {
    "bert": ("BertConfig", "BertModel", TEXT, "text"),
    "roberta": ("RobertaConfig", "RobertaModel", TEXT, "text"),
    "distilbert": ("DistilBertConfig", "DistilBertModel", {"vocab_size": 100, "dim": 64, "n_layers": 2,
                                                            "n_heads": 4, "hidden_dim": 128}, "text"),
    "albert": ("AlbertConfig", "AlbertModel", {**TEXT, "embedding_size": 32}, "text"),
    "deberta-v2": ("DebertaV2Config", "DebertaV2Model", TEXT, "text"),
    "t5-encoder": ("T5Config", "T5EncoderModel", {**T5, "feed_forward_proj": "gated-gelu"}, "text"),
    "gpt2": ("GPT2Config", "GPT2Model", {"vocab_size": 100, "n_embd": 64, "n_layer": 2, "n_head": 4}, "causal"),
    "llama": ("LlamaConfig", "LlamaModel", {**TEXT, "num_key_value_heads": 2}, "causal"),
    "qwen2": ("Qwen2Config", "Qwen2Model", {**TEXT, "num_key_value_heads": 2}, "causal"),
    "gemma": ("GemmaConfig", "GemmaModel", {**TEXT, "num_key_value_heads": 2, "head_dim": 16}, "causal"),
    "phi": ("PhiConfig", "PhiModel", TEXT, "causal"),
    "vit": ("ViTConfig", "ViTModel", IMAGE, "image"),
    "clip": ("CLIPVisionConfig", "CLIPVisionModel", IMAGE, "image"),
    "dinov2-swiglu": ("Dinov2Config", "Dinov2Model", {**IMAGE, "use_swiglu_ffn": True}, "image"),
    "swin": ("SwinConfig", "SwinModel", {"image_size": 32, "patch_size": 4, "embed_dim": 32, "depths": [1, 1],
                                         "num_heads": [2, 4], "window_size": 4}, "image"),
    "segformer": ("SegformerConfig", "SegformerModel", {"image_size": 32}, "image"),
    "levit": ("LevitConfig", "LevitModel", {"image_size": 64, "hidden_sizes": [32, 48, 64], "depths": [1, 1, 1],
                                            "num_attention_heads": [2, 3, 4], "key_dim": [8, 8, 8]}, "image64"),
    # more encoders, decoders and vision models (some export by one exporter only; see the README)
    "electra": ("ElectraConfig", "ElectraModel", {**TEXT, "embedding_size": 32}, "text"),
    "mpnet": ("MPNetConfig", "MPNetModel", TEXT, "text"),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel", TEXT, "text"),
    "convbert": ("ConvBertConfig", "ConvBertModel", TEXT, "text"),
    "funnel": ("FunnelConfig", "FunnelModel", {"vocab_size": 100, "d_model": 64, "n_head": 4, "d_head": 16,
                                               "d_inner": 128, "block_sizes": [1, 1]}, "text"),
    "mobilebert": ("MobileBertConfig", "MobileBertModel", {**TEXT, "embedding_size": 32, "intra_bottleneck_size": 32,
                                                           "true_hidden_size": 32}, "text"),
    "squeezebert": ("SqueezeBertConfig", "SqueezeBertModel", {**TEXT, "embedding_size": 64}, "text"),
    "xlnet": ("XLNetConfig", "XLNetModel", {"vocab_size": 100, "d_model": 64, "n_layer": 2, "n_head": 4,
                                            "d_inner": 128}, "text"),
    "bigbird": ("BigBirdConfig", "BigBirdModel", {**TEXT, "attention_type": "original_full"}, "text"),
    "longformer": ("LongformerConfig", "LongformerModel", {**TEXT, "attention_window": 4}, "text"),
    "nystromformer": ("NystromformerConfig", "NystromformerModel", {**TEXT, "num_landmarks": 4,
                                                                     "segment_means_seq_len": 12}, "text"),
    "roformer": ("RoFormerConfig", "RoFormerModel", {**TEXT, "embedding_size": 64}, "text"),
    "opt": ("OPTConfig", "OPTModel", {"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
                                      "num_attention_heads": 4, "ffn_dim": 128, "word_embed_proj_dim": 64}, "causal"),
    "gpt-neo": ("GPTNeoConfig", "GPTNeoModel", {"vocab_size": 100, "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                                                "attention_types": [[["global", "local"], 1]], "window_size": 4},
                "causal"),
    "gptj": ("GPTJConfig", "GPTJModel", {"vocab_size": 100, "n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8},
             "causal"),
    "bloom": ("BloomConfig", "BloomModel", {"vocab_size": 100, "hidden_size": 64, "n_layer": 2, "n_head": 4}, "causal"),
    "falcon": ("FalconConfig", "FalconModel", {"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
                                               "num_attention_heads": 4}, "causal"),
    "mistral": ("MistralConfig", "MistralModel", {**TEXT, "num_key_value_heads": 2, "sliding_window": 4}, "causal"),
    "gpt-neox": ("GPTNeoXConfig", "GPTNeoXModel", TEXT, "causal"),
    "biogpt": ("BioGptConfig", "BioGptModel", TEXT, "causal"),
    "gemma2": ("Gemma2Config", "Gemma2Model", {**TEXT, "num_key_value_heads": 2, "head_dim": 16, "sliding_window": 4},
               "causal"),
    "qwen3": ("Qwen3Config", "Qwen3Model", {**TEXT, "num_key_value_heads": 2, "head_dim": 16}, "causal"),
    "deit": ("DeiTConfig", "DeiTModel", IMAGE, "image"),
    "beit": ("BeitConfig", "BeitModel", {**IMAGE, "use_relative_position_bias": True}, "image"),
    "mobilevit": ("MobileViTConfig", "MobileViTModel", {"image_size": 32, "patch_size": 2, "hidden_sizes": [16, 24, 32],
                                                        "neck_hidden_sizes": [8, 8, 16, 16, 24, 24, 64],
                                                        "num_attention_heads": 2}, "image"),
    "pvt": ("PvtConfig", "PvtModel", {"image_size": 32, "hidden_sizes": [16, 32, 48, 64], "depths": [1, 1, 1, 1],
                                      "num_attention_heads": [1, 2, 2, 4]}, "image"),
    "swinv2": ("Swinv2Config", "Swinv2Model", {"image_size": 32, "patch_size": 4, "embed_dim": 32, "depths": [1, 1],
                                               "num_heads": [2, 4], "window_size": 4}, "image"),
    "dpt": ("DPTConfig", "DPTModel", {**IMAGE, "num_hidden_layers": 4, "backbone_out_indices": [0, 1, 2, 3]}, "image"),
    "glpn": ("GLPNConfig", "GLPNModel", {"hidden_sizes": [16, 32, 48, 64], "num_attention_heads": [1, 2, 2, 4],
                                         "depths": [1, 1, 1, 1]}, "image"),
    "modernbert": ("ModernBertConfig", "ModernBertModel", {**TEXT, "global_attn_every_n_layers": 2,
                                                          "local_attention": 4, "pad_token_id": 0, "bos_token_id": 1,
                                                          "eos_token_id": 2, "cls_token_id": 1, "sep_token_id": 2},
                   "text"),
    "esm": ("EsmConfig", "EsmModel", {**TEXT, "position_embedding_type": "rotary", "pad_token_id": 1}, "text"),
    "gpt-bigcode": ("GPTBigCodeConfig", "GPTBigCodeModel", {"vocab_size": 100, "n_embd": 64, "n_layer": 2, "n_head": 4,
                                                            "multi_query": True}, "causal"),
    "mpt": ("MptConfig", "MptModel", {"vocab_size": 100, "d_model": 64, "n_layers": 2, "n_heads": 4}, "causal"),
    "phi3": ("Phi3Config", "Phi3Model", {**TEXT, "num_key_value_heads": 2, "pad_token_id": 0}, "causal"),
    "olmo2": ("Olmo2Config", "Olmo2Model", {**TEXT, "num_key_value_heads": 2}, "causal"),
    "cohere": ("CohereConfig", "CohereModel", {**TEXT, "num_key_value_heads": 2}, "causal"),
    "starcoder2": ("Starcoder2Config", "Starcoder2Model", {**TEXT, "num_key_value_heads": 2}, "causal"),
    "codegen": ("CodeGenConfig", "CodeGenModel", {"vocab_size": 100, "n_embd": 64, "n_layer": 2, "n_head": 4,
                                                  "rotary_dim": 8}, "causal"),
    "xglm": ("XGLMConfig", "XGLMModel", {"vocab_size": 100, "d_model": 64, "num_layers": 2, "attention_heads": 4,
                                         "ffn_dim": 128}, "causal"),
    "yolos": ("YolosConfig", "YolosModel", {**SMALL, "image_size": [32, 32], "patch_size": 8,
                                            "num_detection_tokens": 5}, "image"),
    "siglip": ("SiglipVisionConfig", "SiglipVisionModel", IMAGE, "image"),
    "vitdet": ("VitDetConfig", "VitDetModel", {**SMALL, "image_size": 32, "patch_size": 8, "pretrain_image_size": 32},
               "image"),
    "hiera": ("HieraConfig", "HieraModel", {"image_size": [64, 64], "embed_dim": 16, "num_heads": [1, 2, 4, 8],
                                            "depths": [1, 1, 1, 1]}, "image64"),
    # encoder-decoders (the decoder's output; no cache), speech encoders, layout and detection models,
    # and more encoders and decoders
    "bart": ("BartConfig", "BartModel", SEQ2SEQ, "seq2seq"),
    "mbart": ("MBartConfig", "MBartModel", SEQ2SEQ, "seq2seq"),
    "pegasus": ("PegasusConfig", "PegasusModel", SEQ2SEQ, "seq2seq"),
    "marian": ("MarianConfig", "MarianModel", SEQ2SEQ, "seq2seq"),
    "m2m100": ("M2M100Config", "M2M100Model", SEQ2SEQ, "seq2seq"),
    "blenderbot": ("BlenderbotConfig", "BlenderbotModel", SEQ2SEQ, "seq2seq"),
    "plbart": ("PLBartConfig", "PLBartModel", SEQ2SEQ, "seq2seq"),
    "t5": ("T5Config", "T5Model", {**T5, "decoder_start_token_id": 0}, "seq2seq"),
    "longt5": ("LongT5Config", "LongT5Model", {**T5, "decoder_start_token_id": 0, "local_radius": 2}, "seq2seq"),
    "whisper": ("WhisperConfig", "WhisperModel", {**SEQ2SEQ, "num_mel_bins": 16, "max_source_positions": 16,
                                                  "max_target_positions": 32}, "speech2seq"),
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", AUDIO, "audio"),
    "hubert": ("HubertConfig", "HubertModel", AUDIO, "audio"),
    "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel", {**AUDIO, "num_conv_pos_embeddings": 3,
                                                                     "conv_pos_kernel_size": 3}, "audio"),
    "wavlm": ("WavLMConfig", "WavLMModel", AUDIO, "audio"),
    "unispeech": ("UniSpeechConfig", "UniSpeechModel", AUDIO, "audio"),
    "sew": ("SEWConfig", "SEWModel", {**AUDIO, "squeeze_factor": 2}, "audio"),
    "layoutlm": ("LayoutLMConfig", "LayoutLMModel", TEXT, "layout"),
    "detr": ("DetrConfig", "DetrModel", DETR, "image64"),
    "table-transformer": ("TableTransformerConfig", "TableTransformerModel", DETR, "image64"),
    "data2vec-vision": ("Data2VecVisionConfig", "Data2VecVisionModel", {**IMAGE, "use_relative_position_bias": True},
                        "image"),
    "vit-msn": ("ViTMSNConfig", "ViTMSNModel", IMAGE, "image"),
    "ijepa": ("IJepaConfig", "IJepaModel", IMAGE, "image"),
    "pvt-v2": ("PvtV2Config", "PvtV2Model", {"image_size": 32, "hidden_sizes": [16, 32, 48, 64], "depths": [1, 1, 1, 1],
                                            "num_attention_heads": [1, 2, 2, 4]}, "image"),
    "camembert": ("CamembertConfig", "CamembertModel", TEXT, "text"),
    "ernie": ("ErnieConfig", "ErnieModel", TEXT, "text"),
    "megatron-bert": ("MegatronBertConfig", "MegatronBertModel", TEXT, "text"),
    "rembert": ("RemBertConfig", "RemBertModel", {**TEXT, "input_embedding_size": 32, "output_embedding_size": 32},
                "text"),
    "ibert": ("IBertConfig", "IBertModel", TEXT, "text"),
    "granite": ("GraniteConfig", "GraniteModel", {**TEXT, "num_key_value_heads": 2}, "causal"),
    "stablelm": ("StableLmConfig", "StableLmModel", {**TEXT, "num_key_value_heads": 2}, "causal"),
    "persimmon": ("PersimmonConfig", "PersimmonModel", TEXT, "causal"),
    "gemma3": ("Gemma3TextConfig", "Gemma3TextModel", {**TEXT, "num_key_value_heads": 2, "head_dim": 16,
                                                      "sliding_window": 4}, "causal"),
    "exaone4": ("Exaone4Config", "Exaone4Model", {**TEXT, "num_key_value_heads": 2}, "causal"),
}  # fmt: skip


def _text(torch):
    """Ids of two examples (no special ids), the second padded after 8 tokens, and its mask."""
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    return torch.randint(3, 100, (2, 12)), mask


def _inputs(kind, torch):
    """Two examples of what a family takes: text (with decoder ids after it), audio or pixels."""
    if kind in ("text", "causal"):
        return _text(torch), ["input_ids", "attention_mask"]
    if kind == "seq2seq":
        return (*_text(torch), torch.randint(3, 100, (2, 7))), ["input_ids", "attention_mask", "decoder_input_ids"]
    if kind == "speech2seq":  # log-mel frames: 2x the encoder's positions, as Whisper's stride-2 stem takes
        return (torch.randn(2, 16, 32), torch.randint(3, 100, (2, 7))), ["input_features", "decoder_input_ids"]
    if kind == "audio":  # 0.1 s of 16 kHz waveform
        return (torch.randn(2, 1600),), ["input_values"]
    if kind == "layout":  # one box per token, corners ordered as LayoutLM's 0-1000 grid wants them
        ids, mask = _text(torch)
        corners = torch.randint(0, 500, (2, 12, 2))
        return (ids, torch.cat([corners, corners + 100], -1), mask), ["input_ids", "bbox", "attention_mask"]
    side = 64 if kind == "image64" else 32
    return (torch.randn(2, 3, side, side),), ["pixel_values"]


def export(name, how, folder):
    """(model, feeds) of one family exported one way, or the exporter's complaint."""
    import torch
    import transformers

    torch.manual_seed(0)
    config_class, model_class, arguments, kind = FAMILIES[name]
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**arguments)).eval()
    args, names = _inputs(kind, torch)

    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *values):
            extra = {"use_cache": False} if kind in ("causal", "seq2seq", "speech2seq") else {}
            return self.model(**dict(zip(names, values)), **extra)[0]

    path = Path(folder) / f"{name}.onnx"
    options = {"dynamo": True} if how == "dynamo" else {"dynamo": False, "opset_version": 17}
    with quietly():  # the exporter's progress lines and warnings
        torch.onnx.export(FirstOutput(), args, str(path), input_names=names, **options)
    return path, {n: a.numpy() for n, a in zip(names, args)}, kind


def optimizer_type(path, kind):
    """Which of onnxruntime's fusion sets to run: an encoder-decoder's own (BART's also fuses
    Whisper's and Marian's attention, T5's its relative bias), else BERT's or CLIP's."""
    if path.stem in ("t5", "longt5"):
        return "t5"
    if kind in ("seq2seq", "speech2seq"):
        return "bart"
    return "clip" if kind.startswith("image") else "bert"


def _optimized(path, kind, opt_level):
    from onnxruntime.transformers import optimizer

    with working_in(path.parent), quietly():
        return optimizer.optimize_model(
            str(path), model_type=optimizer_type(path, kind), num_heads=4, hidden_size=64, opt_level=opt_level
        )


def _saved(wrapped, path, suffix):
    """Through a file, as users do: the optimizer's in-memory model holds a tensor twice
    (onnxruntime refuses it: "Attempt to replace the existing tensor"), its saved file not."""
    saved = path.with_name(f"{path.stem}.{suffix}.onnx")
    wrapped.save_model_to_file(str(saved))
    return saved


def _int8(path, kind, feeds, static):
    """Static in QOperator format, or dynamic after the optimizer."""
    if static:
        return int8(path, "qoperator", feeds)
    return int8(_saved(_optimized(path, kind, 1), path, "post"), "dynamic")


PASSES = ("plain", "ort", "fp16", "int8-static", "int8-dynamic")


def feeds_for(how, feeds):
    """int8 runs unpadded: a masked key's float32-lowest logit makes the calibrated scale so large
    that the int8 model's attention is uniform whatever the softmax."""
    if how.startswith("int8") and "attention_mask" in feeds:
        return {**feeds, "attention_mask": np.ones_like(feeds["attention_mask"])}
    return feeds


def post_pass(path, kind, how, feeds):
    if how == "plain":
        return onnx.load(str(path))
    if how.startswith("int8"):
        return _int8(path, kind, feeds, how == "int8-static")
    wrapped = _optimized(path, kind, 1 if how == "ort" else 0)
    if how == "fp16":
        wrapped.convert_float_to_float16(keep_io_types=True)
    return onnx.load(str(_saved(wrapped, path, "post")))


def _session(model):
    """onnxruntime with the kernels and its graph optimisations off: onnxruntime 1.32 refuses some
    of its own optimizer's BERT outputs with them on ("Attempt to replace the existing tensor",
    the original as much as the converted); the numbers are the same either way."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if library_available():
        options.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def check(model, feeds):
    """One row: what the rewrite did and how close the converted model's output stays."""
    new, report = rewrite_model(model, RewriteOptions(activations=tuple(SITE_FUNCTIONS)))
    original, converted = (_session(m).run(None, feeds)[0].astype(np.float64) for m in (model, new))
    norms = np.linalg.norm(original) * np.linalg.norm(converted)
    cosine = float((original * converted).sum() / norms) if norms > 0 else float("nan")
    misses = Counter(m["reason"] for m in report.activation_misses)
    return {
        "softmax": f"{sum(s.converted for s in report.sites)}/{len(report.sites)}",
        "attention left": len(report.attention_left_alone),
        "activations": dict(Counter(a["function"] for a in report.activations)),
        "activation misses": dict(misses),
        "cosine": cosine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", nargs="+", default=["torchscript-17", "dynamo"])
    parser.add_argument("--only", nargs="+", default=list(FAMILIES))
    parser.add_argument("--ort", action="store_true", help="also through onnxruntime's transformer optimizer")
    parser.add_argument("--float16", action="store_true", help="also in float16 (onnxruntime's converter)")
    parser.add_argument(
        "--int8", action="store_true", help="also int8 by onnxruntime's quantizer: static (QOperator) and dynamic"
    )
    args = parser.parse_args()
    wanted = {"plain": True, "ort": args.ort, "fp16": args.float16, "int8-static": args.int8, "int8-dynamic": args.int8}
    passes = [how for how in PASSES if wanted[how]]
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only:
            for how in args.exports:
                try:
                    path, feeds, kind = export(name, how, folder)
                except Exception as exc:  # an exporter's limit, not ours: say it and go on
                    print(f"{name:14} {how:15} export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                    continue
                for post in passes:
                    label = how + ("" if post == "plain" else f" {post}")
                    try:
                        post_feeds = feeds_for(post, feeds)
                        row = check(post_pass(path, kind, post, post_feeds), post_feeds)
                    except Exception as exc:  # the quantizer's or optimizer's limit: say it and go on
                        print(f"{name:14} {label:24} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                        continue
                    print(f"{name:14} {label:24} " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
