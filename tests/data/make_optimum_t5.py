"""How tests/data/optimum_t5_decoder_merged.onnx was made: a one-layer T5 with random weights
(seed 0), exported by optimum-onnx 0.1.0 (optimum 2.1.0, transformers 4.57.1, torch 2.13.0) as a
KV-cache decoder, whose two forms optimum merges into the branches of one If. Not run by the
tests (optimum is not a dependency); kept so the file can be made again.

    pip install optimum-onnx==0.1.0 "optimum~=2.1.0"; python tests/data/make_optimum_t5.py
"""

import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from optimum.exporters.onnx import main_export

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    torch.manual_seed(0)
    config = transformers.T5Config(
        d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=4, vocab_size=32,
        relative_attention_num_buckets=8,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        transformers.T5ForConditionalGeneration(config).eval().save_pretrained(f"{work}/t5")
        main_export(f"{work}/t5", output=f"{work}/onnx", task="text2text-generation-with-past")
        shutil.copy(f"{work}/onnx/decoder_model_merged.onnx", HERE / "optimum_t5_decoder_merged.onnx")
