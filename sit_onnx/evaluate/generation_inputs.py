"""Generated inputs for onnxruntime's generation ops (com.microsoft BeamSearch, GreedySearch, Sampling,
WhisperBeamSearch: a decoder, and an encoder, looped inside one node, as `onnxruntime.transformers`'
convert_generation ships GPT-2, T5 and Whisper). Their control inputs are numbers the op checks
(max_length above the prompt's length, num_beams at least 1), not data: random values fail the run,
so they get what a user passes for a short generation, and the prompt's ids stay below the vocabulary."""

from __future__ import annotations

import numpy as np
import onnx

from sit_onnx.graph.walk import attribute

DOMAIN = "com.microsoft"
BEAM_INPUTS = (
    "input_ids", "max_length", "min_length", "num_beams", "num_return_sequences", "length_penalty",
    "repetition_penalty", "vocab_mask", "prefix_vocab_mask", "attention_mask", "decoder_input_ids",
    "logits_processor",
)  # fmt: skip
GREEDY_INPUTS = ("input_ids", "max_length", "min_length", "repetition_penalty", "vocab_mask", "prefix_vocab_mask",
                 "attention_mask")  # fmt: skip
INPUTS = {  # each op's inputs by position, as its schema names them
    "BeamSearch": BEAM_INPUTS,
    "WhisperBeamSearch": (*BEAM_INPUTS, "cross_qk_layer_head", "extra_decoding_ids", "temperature"),
    "GreedySearch": GREEDY_INPUTS,
    "Sampling": (*GREEDY_INPUTS, "presence_mask", "seed"),
}
CONTROLS = {  # what a short generation is given; max_length is set from the prompt
    "min_length": 1,
    "num_beams": 2,
    "num_return_sequences": 1,
    "length_penalty": 1.0,
    "repetition_penalty": 1.0,
    "temperature": 1.0,
    "logits_processor": 0,
    "seed": 1,  # Sampling draws alike in both models
}
ALL_ONES = ("vocab_mask", "prefix_vocab_mask", "attention_mask")  # nothing masked out
NEW_TOKENS = 16  # max_length is the prompt's length plus this


def is_generation(node: onnx.NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type in INPUTS


def generation_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The main graph's generation ops."""
    return [n for n in graph.node if is_generation(n)]


def prompt_subgraph(node: onnx.NodeProto) -> onnx.GraphProto | None:
    """The subgraph the node's input_ids are fed to: the encoder's where there is one (T5, Whisper),
    else the decoder's (GPT-2; its init_decoder, where there is one, has the same vocabulary)."""
    encoder = attribute(node, "encoder")
    return encoder if encoder is not None else attribute(node, "decoder")


def set_controls(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """Give every graph input that feeds a generation op's control input its short-generation value."""
    for node in generation_nodes(model.graph):
        roles = dict(zip(INPUTS[node.op_type], node.input))
        prompt = feeds.get(roles.get("input_ids"))
        prompt = _longest_ids(feeds) if prompt is None else prompt  # fed through a Cast, say
        for role, name in roles.items():
            value = feeds.get(name)
            if value is None:
                continue  # omitted, or computed in the graph
            if role == "max_length":
                ids = prompt is not None and np.issubdtype(prompt.dtype, np.integer)  # Whisper's are features
                length = prompt.shape[-1] if ids else 0
                feeds[name] = np.full(value.shape, length + NEW_TOKENS, value.dtype)
            elif role in CONTROLS:
                feeds[name] = np.full(value.shape, CONTROLS[role], value.dtype)
            elif role in ALL_ONES:
                feeds[name] = np.ones(value.shape, value.dtype)


def _longest_ids(feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    """The integer input of rank >= 2 with the longest last axis: the prompt, where the op reads it
    through other ops."""
    ids = [v for v in feeds.values() if v.ndim >= 2 and np.issubdtype(v.dtype, np.integer)]
    return max(ids, key=lambda v: v.shape[-1], default=None)


def sampled_outputs(model: onnx.ModelProto) -> set[str]:
    """The main graph's outputs written by a Sampling op: tokens drawn at random (seeded alike)."""
    return {out for node in generation_nodes(model.graph) if node.op_type == "Sampling" for out in node.output}
