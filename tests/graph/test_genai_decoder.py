"""A decoder as onnxruntime-genai's model builder writes it (tests/data/genai_llama_gqa.onnx, made by
tests/data/make_genai_llama.py): GroupQueryAttention over packed QKV with rotary embeddings inside,
and one KV buffer of the maximum length per layer, shared by past and present, each row's valid
length read from the attention mask. Converted, it decodes as genai drives it: the present fed
back as the next past, the mask growing by one."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sit_onnx.graph.attention import expand_attention
from sit_onnx.graph.convert import RewriteOptions, rewrite_model

MODEL = Path(__file__).resolve().parents[1] / "data" / "genai_llama_gqa.onnx"
LAYERS, KV_HEADS, HEAD, BUFFER = 2, 2, 16, 32


@pytest.fixture(scope="module")
def models():
    source = onnx.load(MODEL)
    converted, report = rewrite_model(source, RewriteOptions())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [
        ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for m in (source, converted)
    ]
    return sessions, report


def _empty_cache(batch):
    return {
        f"past_key_values.{layer}.{kind}": np.zeros((batch, KV_HEADS, BUFFER, HEAD), np.float32)
        for layer in range(LAYERS)
        for kind in ("key", "value")
    }


def _step(session, ids, mask, cache):
    outputs = session.run(None, {"input_ids": ids, "attention_mask": mask, **cache})
    names = [o.name for o in session.get_outputs()]
    present = {name.replace("present", "past_key_values"): value for name, value in zip(names[1:], outputs[1:])}
    return outputs[0], present


def _decode(session, prompt, steps, forced=None):
    """Each step's last logits and the tokens fed, genai's way: the buffer stays BUFFER long, the mask
    grows by one. The next token is the argmax, or `forced`'s (teacher forcing)."""
    ids, cache, tokens, logits = np.array([prompt], np.int64), _empty_cache(1), [], []
    mask = np.ones((1, len(prompt)), np.int64)
    for step in range(steps):
        out, cache = _step(session, ids, mask, cache)
        logits.append(out[0, -1])
        tokens.append(int(out[0, -1].argmax()) if forced is None else forced[step])
        ids, mask = np.array([[tokens[-1]]], np.int64), np.ones((1, mask.shape[1] + 1), np.int64)
    return tokens, np.array(logits)


def test_every_attention_of_the_genai_decoder_converts(models):
    _, report = models
    assert len(report.converted) == LAYERS and len(report.sites) == LAYERS
    assert [(a["op"], a["expanded"]) for a in report.attention] == [("com.microsoft::GroupQueryAttention", True)] * 2


def test_the_expansion_alone_decodes_exactly_as_the_original(models):
    (source, _), _ = models
    expanded, _ = expand_attention(onnx.load(MODEL), 22)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(expanded.SerializeToString(), options, providers=["CPUExecutionProvider"])
    prompt = [5, 17, 99, 25, 3, 8, 41, 77]
    tokens, want = _decode(source, prompt, 12)
    assert _decode(session, prompt, 12, forced=tokens)[1] == pytest.approx(want, abs=1e-4)


def test_the_converted_decoder_decodes_as_the_original(models):
    """24 steps of the original's greedy decode, fed to both: every step's logits point the same way
    (min cosine 0.994 at K=12; the expansion alone is within 1.3e-5), and the converted model picks
    the original's token wherever the original's choice is not a near-tie (top-1 ahead by 0.2 or
    more: 18 of the 24 steps of this seeded model)."""
    (source, converted), _ = models
    prompt = [5, 17, 99, 25, 3, 8, 41, 77]
    tokens, want = _decode(source, prompt, 24)
    _, got = _decode(converted, prompt, 24, forced=tokens)
    cosines = (want * got).sum(-1) / np.linalg.norm(want, axis=-1) / np.linalg.norm(got, axis=-1)
    assert cosines.min() > 0.99 and np.abs(got - want).max() > 1e-3  # close, and spiking: not the same numbers
    ordered = np.sort(want, axis=-1)
    decided = ordered[:, -1] - ordered[:, -2] >= 0.2
    assert decided.sum() >= 18
    np.testing.assert_array_equal(got[decided].argmax(-1), want[decided].argmax(-1))


def test_a_padded_batch_row_decodes_as_alone(models):
    """Two prompts of 8 and 5 tokens in one batch (the short one padded on the right, masked): each
    row's next-token logits, prompt and one decode step, equal the row run alone, converted too."""
    for session in models[0]:
        prompts = [[5, 17, 99, 25, 3, 8, 41, 77], [9, 30, 12, 44, 45, 0, 0, 0]]
        mask = np.array([[1] * 8, [1] * 5 + [0] * 3], np.int64)
        logits, cache = _step(session, np.array(prompts, np.int64), mask, _empty_cache(2))
        alone, alone_cache = _step(
            session, np.array([prompts[1][:5]], np.int64), np.ones((1, 5), np.int64), _empty_cache(1)
        )
        np.testing.assert_allclose(logits[1, 4], alone[0, -1], atol=1e-4)
        nxt = np.array([[1], [2]], np.int64)
        step_mask = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
        logits, _ = _step(session, nxt, step_mask, cache)
        alone, _ = _step(session, nxt[1:], np.ones((1, 6), np.int64), alone_cache)
        np.testing.assert_allclose(logits[1, 0], alone[0, 0], atol=1e-4)
