"""How tests/data/jax2onnx_flax_block.onnx was made: a flax `nnx` transformer block with random weights
(seed 0; MultiHeadAttention, a GELU MLP, a softmax classifier) exported by jax2onnx 0.17.1 at
opset 23, batch dynamic. Not run by the tests (JAX is not a dependency); kept so the file can be
made again.

    pip install jax2onnx==0.17.1 flax==0.12.8; python tests/data/make_jax2onnx_flax.py
"""

from pathlib import Path

import jax
from flax import nnx
from jax2onnx import to_onnx

HERE = Path(__file__).resolve().parent


class Block(nnx.Module):
    def __init__(self, width: int, heads: int, rngs: nnx.Rngs):
        self.norm1, self.norm2 = nnx.LayerNorm(width, rngs=rngs), nnx.LayerNorm(width, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(num_heads=heads, in_features=width, decode=False, rngs=rngs)
        self.up, self.down = nnx.Linear(width, 2 * width, rngs=rngs), nnx.Linear(2 * width, width, rngs=rngs)
        self.head = nnx.Linear(width, 10, rngs=rngs)

    def __call__(self, x):
        x = x + self.attention(self.norm1(x))
        x = x + self.down(nnx.gelu(self.up(self.norm2(x))))
        return jax.nn.softmax(self.head(x.mean(axis=1)), axis=-1)


if __name__ == "__main__":
    block = Block(32, 2, nnx.Rngs(0))
    spec = [jax.ShapeDtypeStruct(("B", 8, 32), jax.numpy.float32)]
    to_onnx(block, spec, return_mode="file", output_path=str(HERE / "jax2onnx_flax_block.onnx"))
