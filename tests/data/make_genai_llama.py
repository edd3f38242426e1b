"""How tests/data/genai_llama_gqa.onnx was made: a 2-layer Llama with random weights (seed 0, std 0.25, so
its logits and attention are peaked as a trained model's, not near-ties; hidden
64, 4 heads sharing 2 kv heads of 16, vocabulary 128) built by onnxruntime-genai 0.18's model
builder for the CPU in float32, as genai ships decoders: each attention one `GroupQueryAttention`
reading packed QKV, with rotary embeddings inside it, and a KV cache of the maximum length shared
by past and present (`past_present_share_buffer`), its valid length per row given by the attention
mask. The builder's external data is folded into the one file; its genai_config.json is kept as
genai_llama_gqa_config.json. Not run by the tests (genai and a
newer transformers are not dependencies); kept so the file can be made again.

    pip install onnxruntime-genai==0.18.0 onnx_ir transformers torch tokenizers
    python tests/data/make_genai_llama.py
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

HERE = Path(__file__).resolve().parent
VOCABULARY = 128


def save_random_llama(folder: Path) -> None:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCABULARY, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.25,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCABULARY)}, unk_token="t0"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()  # the builder wants a tokenizer beside the weights
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="t0", bos_token="t1", eos_token="t2")
    fast.save_pretrained(folder)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as work:
        source, built = Path(work) / "hf", Path(work) / "genai"
        save_random_llama(source)
        builder = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(source), "-i", str(source)]
        subprocess.run(
            [*builder, "-o", str(built), "-p", "fp32", "-e", "cpu", "-c", str(Path(work) / "cache")], check=True
        )
        onnx.save(onnx.load(built / "model.onnx"), HERE / "genai_llama_gqa.onnx")
        shutil.copyfile(built / "genai_config.json", HERE / "genai_llama_gqa_config.json")
