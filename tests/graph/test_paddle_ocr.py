"""A real pretrained transformer from another framework: RapidOCR's PP-OCRv4 text recogniser
(PaddlePaddle, exported by paddle2onnx at opset 12; SVTR attention blocks, a CTC head, HardSwish as
ReLU6). Converted, it must read the same text as the original from rendered lines."""

import zipfile

import numpy as np
import onnx
import pytest

from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime.session import make_session
from tests.evaluate.pretrained import WHEELS

WHEEL = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
LINES = [
    "Hello world 2026", "SIT-Conversion", "spiking softmax", "onnxruntime 1.23", "The quick brown fox",
    "jumps over 13 lazy dogs", "Transformer SNN", "neuromorphic chips", "energy: 3.14 mJ", "ALBERT BERT ViT T5",
    "make demo && make test", "sit-onnx rewrite model.onnx", "Attention is all you need", "Leaky integrate and fire",
    "Paris, 1 Dec 2026", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789 +-*/=%",
    "email@example.org", "Time steps K=12",
]  # fmt: skip


@pytest.fixture(scope="module")
def recogniser():
    if not (WHEELS / WHEEL).exists():
        pytest.skip(f"no {WHEEL} in {WHEELS} (`make test` downloads it)")
    with zipfile.ZipFile(WHEELS / WHEEL) as wheel:
        return onnx.load_from_string(wheel.read(MEMBER))


@pytest.fixture(scope="module")
def lines():
    """Each line rendered black on white in matplotlib's DejaVu Sans, 48 pixels high, scaled as
    PP-OCR feeds its recogniser: (pixel / 255 - 0.5) / 0.5, NCHW."""
    image_module = pytest.importorskip("PIL.Image")
    from PIL import ImageDraw, ImageFont

    matplotlib = pytest.importorskip("matplotlib")
    font = ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf", 32)
    images = []
    for text in LINES:
        image = image_module.new("RGB", (int(font.getlength(text)) + 16, 48), "white")
        ImageDraw.Draw(image).text((8, 6), text, fill="black", font=font)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        images.append(((pixels - 0.5) / 0.5).transpose(2, 0, 1)[None])
    return images


def _read(model, images):
    """CTC greedy decoding: the class of each frame, repeats and blanks (class 0) dropped."""
    session, texts = make_session(model), []
    for image in images:
        classes = session.run(None, {"x": image})[0].argmax(-1)[0]
        texts.append(tuple(c for i, c in enumerate(classes) if c != 0 and (i == 0 or c != classes[i - 1])))
    return texts


def _same(source, converted, images):
    return sum(a == b for a, b in zip(_read(source, images), _read(converted, images)))


def test_every_softmax_converts_and_the_text_read_stays(recogniser, lines):
    converted, report = rewrite_model(recogniser, RewriteOptions())
    assert [site.converted for site in report.sites] == [True] * 3
    assert any("opset 12 to 13" in note for note in report.notes)
    source = _read(recogniser, lines)
    assert sum(len(t) >= 10 for t in source) >= 15  # the original reads the lines (not blanks)
    assert _same(recogniser, converted, lines) >= 19  # measured 20 of 20 (60 of 60 over three fonts)


def test_hardswish_through_relu6_is_found_and_the_gated_form_keeps_the_text(recogniser, lines):
    options = RewriteOptions(activations=("hardswish", "hardsigmoid"), activation_form="gated")
    converted, report = rewrite_model(recogniser, options)
    forms = [a["form"] for a in report.activations]
    assert forms.count("x * Clip(x + 3, 0, 6) / 6") == 28 and forms.count("HardSigmoid") == 2
    assert report.activation_misses == []
    assert _same(recogniser, converted, lines) >= 18  # measured 58 of 60 over three fonts


def test_in_float16_by_onnxruntimes_tool_the_text_read_stays(recogniser, lines):
    """onnxruntime's float16 converter (inputs and outputs kept float32): the softmax logits are
    float16 (at opset 13 the kernels take them between Casts) and the converted model reads what
    the float16 original reads."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(recogniser, keep_io_types=True)
    converted, report = rewrite_model(half, RewriteOptions())
    assert [site.replaced_with for site in report.sites] == [["Cast", "SpikingSoftmax", "Cast"]] * 3
    assert _same(half, converted, lines) >= 18  # measured 19 of 20 (the float16 original: 19 of 20 as float32 reads)
