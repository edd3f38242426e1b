"""Cost of `sit-onnx rewrite` on a BERT-base-sized graph, against a plain onnx load + save.

Builds a 12-layer, hidden-768 encoder from random weights (about 440 MB), then in
separate processes times (a) onnx.load + onnx.save and (b) the rewrite of the same
file, and prints seconds and peak memory of each and their ratios (goal: < 1.5x).

    python bench/rewrite.py [--layers 12] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def bert_like(
    layers: int = 12, hidden: int = 768, heads: int = 12, ffn: int = 3072, vocab: int = 30522, seq: int = 128
) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def weight(name, shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape, dtype=np.float32) * 0.02), name))
        return name

    def const(name, values, dtype=np.int64):
        inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    head_dim = hidden // heads
    nodes.append(helper.make_node("Gather", [weight("embeddings", (vocab, hidden)), "input_ids"], ["h0"]))
    const("split_heads", [0, seq, heads, head_dim])
    const("merge_heads", [0, seq, hidden])
    const("scale", np.float32(head_dim**-0.5), np.float32)
    h = "h0"
    for i in range(layers):
        p = f"l{i}"
        nodes += [
            helper.make_node("MatMul", [h, weight(f"{p}.qkv", (hidden, 3 * hidden))], [f"{p}.qkv_out"]),
            helper.make_node("Split", [f"{p}.qkv_out"], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=-1, num_outputs=3),
        ]
        for t in ("q", "k", "v"):
            nodes += [
                helper.make_node("Reshape", [f"{p}.{t}", "split_heads"], [f"{p}.{t}4"]),
                helper.make_node(
                    "Transpose", [f"{p}.{t}4"], [f"{p}.{t}h"], perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3]
                ),
            ]
        nodes += [
            helper.make_node("MatMul", [f"{p}.qh", f"{p}.kh"], [f"{p}.scores"]),
            helper.make_node("Mul", [f"{p}.scores", "scale"], [f"{p}.scaled"]),
            helper.make_node("Softmax", [f"{p}.scaled"], [f"{p}.attn"], axis=-1, name=f"{p}.softmax"),
            helper.make_node("MatMul", [f"{p}.attn", f"{p}.vh"], [f"{p}.ctx"]),
            helper.make_node("Transpose", [f"{p}.ctx"], [f"{p}.ctx_t"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{p}.ctx_t", "merge_heads"], [f"{p}.ctx_m"]),
            helper.make_node("MatMul", [f"{p}.ctx_m", weight(f"{p}.out", (hidden, hidden))], [f"{p}.attn_out"]),
            helper.make_node("Add", [h, f"{p}.attn_out"], [f"{p}.res1"]),
            helper.make_node("LayerNormalization", [f"{p}.res1", weight(f"{p}.ln1", (hidden,))], [f"{p}.n1"], axis=-1),
            helper.make_node("MatMul", [f"{p}.n1", weight(f"{p}.ff1", (hidden, ffn))], [f"{p}.f1"]),
            helper.make_node("Gelu", [f"{p}.f1"], [f"{p}.g"]),
            helper.make_node("MatMul", [f"{p}.g", weight(f"{p}.ff2", (ffn, hidden))], [f"{p}.f2"]),
            helper.make_node("Add", [f"{p}.n1", f"{p}.f2"], [f"{p}.res2"]),
            helper.make_node(
                "LayerNormalization", [f"{p}.res2", weight(f"{p}.ln2", (hidden,))], [f"{p}.out_h"], axis=-1
            ),
        ]
        h = f"{p}.out_h"
    graph = helper.make_graph(
        nodes,
        "bert_like",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", seq])],
        [helper.make_tensor_value_info(h, TensorProto.FLOAT, ["b", seq, hidden])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
mode, src, dst = sys.argv[1:4]
start = time.perf_counter()
if mode == "plain":
    import onnx
    onnx.save(onnx.load(src), dst)
else:
    from sit_onnx.graph.convert_file import rewrite_file
    rewrite_file(src, dst, force=True)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(mode: str, src: Path, dst: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(src), str(dst)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--keep", type=Path, default=None, help="keep the generated files in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        src = folder / "bert_like.onnx"
        onnx.save(bert_like(args.layers), str(src))
        size_mb = src.stat().st_size / 2**20
        plain = measure("plain", src, folder / "plain.onnx")
        rewrite = measure("rewrite", src, folder / "bert_like.sit.onnx")
    print(f"model: {args.layers} layers, hidden 768, {size_mb:.0f} MB")
    print(f"onnx load+save : {plain['seconds']:7.2f} s, peak {plain['peak_mb']:7.0f} MB")
    print(f"sit-onnx rewrite: {rewrite['seconds']:7.2f} s, peak {rewrite['peak_mb']:7.0f} MB")
    print(
        f"ratio (goal < 1.5): time {rewrite['seconds'] / plain['seconds']:.2f}x, "
        f"memory {rewrite['peak_mb'] / plain['peak_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
