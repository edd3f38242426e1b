"""Whole models, original against converted (the default output, with the library), measured in
the same run: a BERT-base-shaped encoder (12 layers, hidden 768, 12 heads, FFN 3072, 8 x 128
tokens) and a causal decoder stack (6 layers, hidden 512, 8 heads, 8 x 128 tokens, causal mask),
with all threads and with one. Then session creation on the encoder (~340 MB of weights): a plain
session with the library registered against sit-onnx's make_session (which also checks that the
kernels take the spiking ops). Goals: converted encoder <= 1.05x its original; session creation
<= 1.2x.

    python bench/models.py [--repeat 10] [--steps 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.kernels import session  # noqa: E402
from sit_onnx.graph.convert import RewriteOptions, rewrite_model  # noqa: E402
from sit_onnx.runtime import SessionSpec, make_session  # noqa: E402


def causal_decoder(layers: int, dim: int, heads: int):
    """A decoder-only stack: encoder layers under a causal mask (what GPT-style blocks compute)."""
    import torch

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            layer = torch.nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True)
            self.stack = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

        def forward(self, x):
            mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            return self.stack(x, mask=mask, is_causal=True)

    return Decoder().eval()


def distinct_weights(module):
    """TransformerEncoder clones one layer: identical weights, which the exporter stores once. Give
    every layer its own, so the model is the size of the real thing (~340 MB for BERT-base)."""
    import torch

    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.Linear):
                torch.nn.init.normal_(sub.weight, std=0.02)
            elif isinstance(sub, torch.nn.MultiheadAttention):
                torch.nn.init.normal_(sub.in_proj_weight, std=0.02)
    return module


def export_models(folder: Path) -> dict[str, tuple[Path, tuple[int, ...]]]:
    import torch

    from sit_onnx.export import export_module

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, batch_first=True)
    bert = distinct_weights(torch.nn.TransformerEncoder(layer, 12, enable_nested_tensor=False).eval())
    models = {
        "bert-base encoder": (bert, (8, 128, 768)),
        "causal decoder 6x512": (distinct_weights(causal_decoder(6, 512, 8)), (8, 128, 512)),
    }
    paths = {}
    for name, (module, shape) in models.items():
        path = folder / (name.split()[0] + ".onnx")
        export_module(module, torch.randn(*shape), path, opset=17)
        paths[name] = (path, shape)
    return paths


def median_ms(timed, feeds, repeat):
    timed.run(None, feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        timed.run(None, feeds)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def bench_whole_models(paths, args, folder):
    for name, (path, shape) in paths.items():
        converted = folder / (path.stem + ".sit.onnx")
        new, report = rewrite_model(onnx.load(str(path)), RewriteOptions(steps=args.steps))
        onnx.save(new, str(converted))
        feeds = {"input": np.random.default_rng(0).normal(size=shape).astype(np.float32)}
        for threads in (0, 1) if args.provider == "cpu" else (0,):
            original_ms = median_ms(session(path, args.provider, False, threads), feeds, args.repeat)
            converted_ms = median_ms(session(converted, args.provider, True, threads), feeds, args.repeat)
            print(
                f"{name:22} {len(report.converted):2} sites, {'all threads' if threads == 0 else '1 thread   '}: "
                f"original {original_ms:8.1f} ms | converted (default, kernels) {converted_ms:8.1f} ms "
                f"({converted_ms / original_ms:.3f}x)",
                flush=True,
            )


def bench_session_creation(path: Path, args):
    size_mb = path.stat().st_size / 2**20
    plain, ours = [], []
    for _ in range(args.sessions):
        start = time.perf_counter()
        session(path, "cpu")
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        make_session(path, SessionSpec(provider="cpu", use_library=True))
        ours.append(time.perf_counter() - start)
    p, o = 1000 * float(np.median(plain)), 1000 * float(np.median(ours))
    print(
        f"session creation on {path.name} ({size_mb:.0f} MB): plain {p:.0f} ms | make_session {o:.0f} ms ({o / p:.2f}x)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.provider == "cuda" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    print(f"onnxruntime {ort.__version__}, K={args.steps}, median of {args.repeat} runs")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        paths = export_models(folder)
        bench_whole_models(paths, args, folder)
        converted = folder / "bert-base.sit.onnx"
        if args.provider == "cpu":
            bench_session_creation(converted, args)


if __name__ == "__main__":
    main()
