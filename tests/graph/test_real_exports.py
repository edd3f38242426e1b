"""Real exports, end to end: a BERT encoder (transformers' BertModel, random weights from a config:
no download) and a causal decoder stack, exported the ways people export them in 2026 -
TorchScript at opset 17, dynamo at its default opset, dynamo at opset 23 (the standard Attention
op), through onnxruntime's transformer optimizer (com.microsoft Attention, EmbedLayerNormalization,
SkipLayerNormalization), through onnxscript's fusions for onnxruntime (the dynamo path's own:
com.microsoft Attention with an attention bias, MultiHeadAttention, BiasGelu), and to float16 by
onnxconverter-common. Each converts every softmax site,
leaves no attention op alone, and keeps its output (cosine >= 0.9995)."""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model

torch = pytest.importorskip("torch", reason="torch exports the models")
transformers = pytest.importorskip("transformers", reason="transformers defines the BERT encoder")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _in_own_folder(tmp_path, monkeypatch):
    """onnxruntime's optimizer and quantizer run its symbolic shape inference, which saves
    sym_shape_infer_temp.onnx and the weights into the working directory when it cannot finish."""
    monkeypatch.chdir(tmp_path)


def _bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=100,
        max_position_embeddings=64,
    )
    ids = torch.randint(0, 100, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0  # padding: the masks must survive the conversion
    return transformers.BertModel(config).eval(), (ids, mask), ["input_ids", "attention_mask"]


class CausalDecoder(torch.nn.Module):
    """Decoder-only blocks: encoder layers under a causal mask."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.stack = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.stack(x, mask=mask, is_causal=True)


def _decoder():
    torch.manual_seed(1)
    return CausalDecoder().eval(), (torch.randn(2, 10, 64),), ["x"]


def _export(module, args, names, path, **how):
    if not how.get("dynamo"):  # TorchScript: dynamic batch and sequence, as people export
        how = {**how, "dynamic_axes": {name: {0: "batch", 1: "sequence"} for name in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, **how)
    return onnx.load(str(path))


def _run(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0].astype(np.float64)


def _cosine(a, b) -> float:
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def _optimized(path, module_name):
    from onnxruntime.transformers import optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optimizer.optimize_model(str(path), model_type="bert", num_heads=4, hidden_size=64).model


def _onnxscript_fusions(model):
    """torch's dynamo path to onnxruntime's fused ops: onnxscript's optimizer, then its ORT fusions."""
    onnxscript = pytest.importorskip("onnxscript", reason="onnxscript fuses the dynamo export")
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    graph = onnxscript.ir.from_proto(model)
    onnxscript.optimizer.optimize(graph)
    optimize_for_ort(graph)
    return onnxscript.ir.to_proto(graph)


def _float16(model):
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(model)
    wrapped.convert_float_to_float16(keep_io_types=True)
    return wrapped.model


def _int8(path, feeds, how):
    """onnxruntime's quantizer as people run it: static QOperator or QDQ, or dynamic after the
    transformer optimizer."""
    from bench.ort_tools import int8

    if how == "dynamic":
        onnx.save(_optimized(path, None), str(path))
    return int8(path, how, feeds)


QUANTIZED_OPS = {"qoperator": "QLinearSoftmax", "dynamic": "QAttention", "qdq": "Softmax"}


EXPORTS = {
    "torchscript-17": ({"dynamo": False, "opset_version": 17}, None),
    "dynamo-default": ({"dynamo": True}, None),
    "dynamo-23": ({"dynamo": True, "opset_version": 23}, None),
    "ort-optimizer": ({"dynamo": False, "opset_version": 17}, _optimized),
    "onnxscript-ort-fusions": ({"dynamo": True}, _onnxscript_fusions),
    "float16": ({"dynamo": False, "opset_version": 17}, _float16),
    "float16-dynamo-23": ({"dynamo": True, "opset_version": 23}, _float16),
    "float16-onnxscript-ort-fusions": ({"dynamo": True}, lambda model: _float16(_onnxscript_fusions(model))),
}
FUSES_ATTENTION = ("ort-optimizer", "onnxscript-ort-fusions", "float16-onnxscript-ort-fusions")
INT8 = {  # onnxruntime's quantizer after a TorchScript export
    "int8-qoperator": ({"dynamo": False, "opset_version": 17}, "qoperator"),
    "int8-qdq": ({"dynamo": False, "opset_version": 17}, "qdq"),
    "int8-dynamic-ort-optimizer": ({"dynamo": False, "opset_version": 17}, "dynamic"),
}


@pytest.mark.parametrize("model_name", ["bert", "decoder"])
@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_real_export_converts_every_site_and_keeps_its_output(tmp_path, model_name, export):
    module, args, names = _bert() if model_name == "bert" else _decoder()
    how, after = EXPORTS[export]
    path = tmp_path / "m.onnx"
    model = _export(module, args, names, path, **how)
    feeds = {name: arg.numpy() for name, arg in zip(names, args)}
    if after is _optimized:
        model = after(path, model_name)
    elif after is not None:
        model = after(model)
    if model_name == "bert" and export in FUSES_ATTENTION:  # the site is inside the fused op
        assert any(n.op_type == "Attention" and n.domain == "com.microsoft" for n in model.graph.node)
    new, report = rewrite_model(model, RewriteOptions())
    assert report.sites and all(s.converted for s in report.sites)
    assert not report.attention_left_alone, report.attention_left_alone
    assert _unread(new) == _unread(model)  # nothing left behind (dynamo-23's expanded Attention had 2 per op)
    original, converted = _run(model, feeds), _run(new, feeds)
    cosine = _cosine(original, converted)
    assert cosine >= 0.9995, cosine


def _unread(model) -> list[str]:
    """The main graph's nodes whose outputs nothing reads."""
    from sit_onnx.graph.walk import graph_protos

    read = {name for g in graph_protos(model.graph) for n in g.node for name in n.input}
    read |= {o.name for o in model.graph.output}
    return sorted(n.output[0] for n in model.graph.node if not any(o in read for o in n.output))


@pytest.mark.parametrize("export", sorted(INT8))
def test_int8_bert_converts_every_site_and_keeps_its_output(tmp_path, export):
    """The BERT without padding: a masked key adds float32's lowest to its logit, and the
    quantizer calibrates that into a scale so large that every other logit rounds to one level
    (uniform attention, which any softmax gets right). The decoder's causal -inf mask does the same."""
    module, args, names = _bert()
    args = (args[0], torch.ones_like(args[1]))
    how, after = INT8[export]
    path = tmp_path / "m.onnx"
    _export(module, args, names, path, **how)
    feeds = {name: arg.numpy() for name, arg in zip(names, args)}
    model = _int8(path, feeds, after)
    assert any(n.op_type == QUANTIZED_OPS[after] for n in model.graph.node)  # the op the quantizer makes
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.sites) == 2 and all(s.converted for s in report.sites)
    assert not report.attention_left_alone, report.attention_left_alone
    original, converted = _run(model, feeds), _run(new, feeds)
    assert np.abs(original - converted).max() > 1e-4  # the attention is not uniform: the sites matter
    cosine = _cosine(original, converted)
    assert cosine >= 0.9995, cosine


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_every_gelu_of_a_real_export_converts(tmp_path, export):
    """transformers' BERT (2 layers: 2 GELU) through every exporter and post-pass: Erf form, Gelu op,
    onnxruntime's BiasGelu, float16; each converted, none left behind, the output still close."""
    module, args, names = _bert()
    how, after = EXPORTS[export]
    path = tmp_path / "m.onnx"
    model = _export(module, args, names, path, **how)
    if after is _optimized:
        model = after(path, "bert")
    elif after is not None:
        model = after(model)
    new, report = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    assert len(report.activations) == 2, (report.activations, report.activation_misses)
    # the pooler's Tanh is looked at as a possible GELU (tanh form) and left, saying why
    assert [m["function"] for m in report.activation_misses] == ["Tanh"]
    assert not any(n.op_type in ("Erf", "Gelu", "BiasGelu", "FastGelu") for n in new.graph.node)
    feeds = {name: arg.numpy() for name, arg in zip(names, args)}
    original, converted = _run(model, feeds), _run(new, feeds)
    cosine = _cosine(original, converted)
    assert cosine >= 0.995, cosine


class _FirstOutput(torch.nn.Module):
    """transformers' models return a ModelOutput: export its first tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return self.model(*inputs)[0]


def _vision(kind):
    torch.manual_seed(0)
    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
    config_class, model_class = {
        "clip": (transformers.CLIPVisionConfig, transformers.CLIPVisionModel),
        "vit": (transformers.ViTConfig, transformers.ViTModel),
    }[kind]
    config = config_class(**sizes, image_size=32, patch_size=8)
    return _FirstOutput(model_class(config).eval()), (torch.randn(2, 3, 32, 32),), ["pixel_values"]


def _vision_export(tmp_path, kind, export):
    module, args, names = _vision(kind)
    path = tmp_path / "m.onnx"
    how = {"dynamo": True} if export == "dynamo" else {"dynamo": False, "opset_version": 17}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, **how)
    model = onnx.load(str(path))
    if export == "ort-optimizer":  # fuses QuickGelu (CLIP) and Gelu after a bias-fused Gemm, untyped after it
        from onnxruntime.transformers import optimizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = optimizer.optimize_model(str(path), model_type=kind, num_heads=4, hidden_size=64).model
    return model, {names[0]: args[0].numpy()}


@pytest.mark.parametrize("export", ["torchscript-17", "dynamo", "ort-optimizer"])
def test_clips_quick_gelu_converts_as_a_swish(tmp_path, export):
    """CLIP's QuickGELU, x * Sigmoid(1.702 x), written out or fused by onnxruntime's optimizer, is
    converted with silu (SiLU's set rescaled); asked for gelu alone, each one says how."""
    model, feeds = _vision_export(tmp_path, "clip", export)
    new, report = rewrite_model(model, RewriteOptions(activations=("silu",)))
    form = "com.microsoft::QuickGelu (alpha=1.702)" if export == "ort-optimizer" else "x * Sigmoid(1.702 x) (QuickGELU)"
    assert [(a["form"], round(a["input_scale"], 3)) for a in report.activations] == [(form, 1.702)] * 2
    original, converted = _run(model, feeds), _run(new, feeds)
    cosine = _cosine(original, converted)
    assert cosine >= 0.999, cosine
    _, gelu_only = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    assert gelu_only.activations == []
    assert [m["reason"].endswith("not GELU: add silu to --activations") for m in gelu_only.activation_misses] == [
        True
    ] * 2


def test_gelu_after_onnxruntimes_fusions_converts(tmp_path):
    """A ViT through onnxruntime's optimizer: its Gelu follows a bias-fused Gemm after a
    SkipLayerNormalization, where onnx's inference stopped (was: 'type unknown', left alone)."""
    model, feeds = _vision_export(tmp_path, "vit", "ort-optimizer")
    assert any(n.op_type == "SkipLayerNormalization" for n in model.graph.node)
    new, report = rewrite_model(model, RewriteOptions(activations=("gelu",)))
    assert [a["form"] for a in report.activations] == ["com.microsoft::Gelu"] * 2, report.activation_misses
    original, converted = _run(model, feeds), _run(new, feeds)
    assert np.isfinite(converted).all() and converted.shape == original.shape


def test_distilbert_fused_and_halved_by_onnxruntime_converts(tmp_path):
    """DistilBERT through onnxruntime's fusions and float16 converter: its Attention ops read a
    mask_index that the converter declares with a type but no shape, where onnx's inference cannot
    reach (after EmbedLayerNormalization); onnxruntime's symbolic inference gives its rank (was: 'a
    None-D mask_index is not decomposed yet', both sites left alone)."""
    from onnxruntime.transformers import optimizer

    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128)
    module = _FirstOutput(transformers.DistilBertModel(config).eval())
    ids, mask = torch.randint(0, 100, (2, 12)), torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (ids, mask), str(path), input_names=["input_ids", "attention_mask"], opset_version=17, dynamo=False
        )
        fused = optimizer.optimize_model(str(path), model_type="bert", num_heads=4, hidden_size=64, opt_level=0)
        fused.convert_float_to_float16(keep_io_types=True)
    fused.save_model_to_file(str(tmp_path / "fused.onnx"))  # as users do: the file holds its opset imports
    model = onnx.load(str(tmp_path / "fused.onnx"))
    assert [n.op_type for n in model.graph.node].count("Attention") == 2
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.sites) == 2 and all(s.converted for s in report.sites)
    assert not report.attention_left_alone, report.attention_left_alone
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    converted = _run(new, feeds)
    assert np.isfinite(converted).all() and converted.shape == (2, 12, 64)


def test_t5_encoder_through_onnxscripts_fusions_converts(tmp_path):
    """transformers' T5 encoder by dynamo and onnxscript's ORT fusions: its attention becomes
    com.microsoft MultiHeadAttention fed the relative position bias as an attention bias (no
    scaling: T5 folds it into the weights). Every site converted, none left, the output kept."""
    torch.manual_seed(0)
    config = transformers.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=100)
    module = _FirstOutput(transformers.T5EncoderModel(config).eval())
    ids = torch.randint(0, 100, (2, 12))
    model = _onnxscript_fusions(_export(module, (ids,), ["input_ids"], tmp_path / "m.onnx", dynamo=True))
    fused = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    assert len(fused) == 2 and all(n.input[5] for n in fused)  # the bias is input 5
    new, report = rewrite_model(model, RewriteOptions())
    assert len(report.sites) == 2 and all(s.converted for s in report.sites)
    assert not report.attention_left_alone, report.attention_left_alone
    feeds = {"input_ids": ids.numpy()}
    original, converted = _run(model, feeds), _run(new, feeds)
    cosine = _cosine(original, converted)
    assert cosine >= 0.9995, cosine
