"""Spiking chain vs onnxruntime's native Softmax, measured in the same run.

Prints, per tensor and provider, milliseconds and the ratio spiking/native
(goal on CPU: <= 1.5 at K=12), SpikingActivation against onnxruntime's Gelu on a
BERT FFN tensor (goal: <= 1.5x), and on CUDA the chain's effective bandwidth as a
share of a plain device copy measured here (goal: >= 70%). Then a whole
converted Transformer: latency converted/original with the kernels (goal <= 1.10
on CPU) and with the function fallback.

    python bench/kernels.py [--steps 12] [--repeat 20] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sit_onnx.graph.convert import RewriteOptions, rewrite_model  # noqa: E402
from sit_onnx.runtime.library import get_library_path  # noqa: E402

TENSORS = {"bert-base attention 8x12x128x128": (8, 12, 128, 128), "vit-base attention 8x12x197x197": (8, 12, 197, 197)}


def softmax_graph(shape, opset=17):
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=-1, name="softmax")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def copy_graph(shape):
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "zero"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [zero],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def session(model, provider, library=True, threads=0):
    """A timed session: `model` a ModelProto or a path; provider 'cpu' or 'cuda' (with CPU behind)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    # Sessions are timed in turn: a pool left spinning after its run would eat the next one's cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if library:
        options.register_custom_ops_library(get_library_path())
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=providers)


def caller(sess, x, provider):
    """One run of `sess` on x; on CUDA inputs and outputs stay on the device (IOBinding)."""
    if provider == "cuda":
        binding = sess.io_binding()
        x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        binding.bind_ortvalue_input(sess.get_inputs()[0].name, x_dev)
        binding.bind_output(sess.get_outputs()[0].name, "cuda", 0)
        return lambda: sess.run_with_iobinding(binding)
    feeds = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feeds)


def time_calls(calls, repeat, block=10):
    """Median milliseconds per call. Each call runs `block` times in a row (its buffers and caches
    warm, as a layer's are in a model's steady state), the blocks taken in turn over about `repeat`
    runs each, so a machine that slows down slows them all alike. Calls interleaved one by one
    would time each after the others had flushed its caches, which flatters compute-bound kernels
    against memory-bound ones (onnxruntime's Softmax measured up to 40% slower that way)."""
    for call in calls.values():
        for _ in range(3):
            call()
    samples = {name: [] for name in calls}
    for _ in range(max(1, -(-repeat // block))):
        for name, call in calls.items():
            for _ in range(block):
                start = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - start)
    return {name: 1000 * float(np.median(values)) for name, values in samples.items()}


def bench_tensors(args, provider):
    rows = []
    for label, shape in TENSORS.items():
        x = np.random.default_rng(0).normal(0, 3, shape).astype(np.float32)
        sessions = {"native": session(softmax_graph(shape), provider, False)}
        modes = {  # shift, sigmoid, fuse
            "shift": (True, False, False),
            "no-shift": (False, False, False),
            "fused": (True, False, True),
            "sigmoid": (False, True, True),
        }
        converted = {
            mode: rewrite_model(softmax_graph(shape), RewriteOptions(steps=args.steps, shift=s, sigmoid=g, fuse=f))[0]
            for mode, (s, g, f) in modes.items()
        }
        sessions.update({mode: session(model, provider) for mode, model in converted.items()})
        if provider == "cpu":  # the pool's worth: native and fused on one intra-op thread
            sessions["native 1 thread"] = session(softmax_graph(shape), provider, False, threads=1)
            sessions["fused 1 thread"] = session(converted["fused"], provider, threads=1)
        if provider == "cuda":
            sessions["copy"] = session(copy_graph(shape), provider, False)
        ms = time_calls({name: caller(sess, x, provider) for name, sess in sessions.items()}, args.repeat)
        row = {"tensor": label, "provider": provider, "native_ms": ms["native"]}
        for mode in modes:
            row[f"{mode}_ms"] = ms[mode]
            row[f"{mode}_ratio"] = ms[mode] / ms["native"]
        if provider == "cpu":
            row["one_thread_ratio"] = ms["fused 1 thread"] / ms["native 1 thread"]
            row["pool_speedup"] = ms["fused 1 thread"] / ms["fused"]
        if provider == "cuda":
            # Effective bandwidth, counted as softmax's least traffic (one read, one write) on both
            # sides: re-reads of a row that the caches absorb earn nothing.
            row["copy_ms"], row["bandwidth_share"] = ms["copy"], ms["copy"] / ms["fused"]
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


# On the GPU the same attention shapes, batched up so that input and output are over 4x the H200's
# 60 MB L2 cache: a tensor that fits in L2 measures the cache, not memory.
GPU_TENSORS = {
    "bert-base attention 256x12x128x128": (256, 12, 128, 128),
    "vit-base attention 128x12x197x197": (128, 12, 197, 197),
}


def _torch_graph_ms(fn, repeats):
    """Mean ms of `fn` captured `repeats` times in one CUDA graph (no host launch overhead)."""
    import torch

    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeats):
            fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def bench_cuda_kernels(args):
    """The CUDA kernels through the test harness (no onnxruntime-gpu needed), timed with CUDA events
    against torch's softmax and a plain device copy of the same tensor (the bandwidth ceiling)."""
    import torch

    from sit_onnx.neurons.params import SHIFT_RANGE, shipped_params
    from tests.cuda_harness import Harness

    harness, params = Harness(), shipped_params(args.steps, SHIFT_RANGE)
    for dtype in (torch.float32, torch.float16):
        for label, shape in GPU_TENSORS.items():
            x = (torch.randn(shape, device="cuda") * 3).to(dtype)
            ms = {
                "copy": harness.time_ms(harness.copy, x, repeats=args.repeat),
                "fused": harness.time_ms(harness.softmax, x, params, repeats=args.repeat),
                "exp": harness.time_ms(harness.exp, x, params, repeats=args.repeat),
                "norm": harness.time_ms(harness.norm, x, repeats=args.repeat),
                "torch": _torch_graph_ms(lambda: torch.softmax(x, -1), args.repeat),
                "shift": _torch_graph_ms(lambda: x - x.amax(-1, keepdim=True), args.repeat),
            }
            chain = ms["shift"] + ms["exp"] + ms["norm"]
            gbps = 2 * x.numel() * x.element_size() / ms["copy"] / 1e6
            print(
                f"cuda {str(dtype)[6:]:7} {label:34} copy {ms['copy'] * 1000:.0f} us ({gbps:.0f} GB/s)"
                f" | torch softmax {ms['torch'] * 1000:.0f} us ({100 * ms['copy'] / ms['torch']:.0f}% of copy)"
                f" | fused {ms['fused'] * 1000:.0f} us ({ms['fused'] / ms['torch']:.2f}x torch,"
                f" {100 * ms['copy'] / ms['fused']:.0f}% of device-copy bandwidth)"
                f" | SpikingExp {ms['exp'] * 1000:.0f} us ({100 * ms['copy'] / ms['exp']:.0f}% of copy)"
                f" | SpikingNorm {ms['norm'] * 1000:.0f} us ({100 * ms['copy'] / ms['norm']:.0f}% of copy)"
                f" | default chain with torch's max-shift {chain * 1000:.0f} us ({chain / ms['torch']:.2f}x torch)",
                flush=True,
            )


def format_row(row):
    text = (
        f"{row['provider']:4} {row['tensor']:34} native {row['native_ms']:7.3f} ms | chain+shift "
        f"{row['shift_ms']:7.3f} ms ({row['shift_ratio']:.2f}x) | chain no-shift {row['no-shift_ms']:7.3f} ms "
        f"({row['no-shift_ratio']:.2f}x) | fused (shift) {row['fused_ms']:7.3f} ms ({row['fused_ratio']:.2f}x)"
        f" | fused sigmoid {row['sigmoid_ms']:7.3f} ms ({row['sigmoid_ratio']:.2f}x)"
    )
    if "pool_speedup" in row:
        text += (
            f" | 1 thread: fused/native {row['one_thread_ratio']:.2f}x, "
            f"intra-op pool speed-up {row['pool_speedup']:.2f}x"
        )
    if "bandwidth_share" in row:
        text += f" | {100 * row['bandwidth_share']:.0f}% of device-copy bandwidth"
    return text


def gelu_graph(shape, form):
    """onnxruntime's own GELU: the ONNX Gelu op (opset 20) or the Erf form torch writes below opset 20."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    if form == "Gelu":
        graph = helper.make_graph([helper.make_node("Gelu", ["x"], ["y"])], "g", [x], [y])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    consts = [
        helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("r2", 2**0.5), ("one", 1.0), ("half", 0.5))
    ]
    nodes = [
        helper.make_node("Div", ["x", "r2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["x", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    return helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], consts), opset_imports=[helper.make_opsetid("", 17)]
    )


ACTIVATION_TENSOR = ("bert-base FFN 8x128x3072", (8, 128, 3072))


def bench_activation(args, provider):
    """SpikingActivation (GELU set) vs onnxruntime's Gelu op and the Erf form it replaces (goal <= 1.5x)."""
    label, shape = ACTIVATION_TENSOR
    x = np.random.default_rng(0).normal(0, 2, shape).astype(np.float32)
    native = {form: gelu_graph(shape, form) for form in ("Gelu", "Erf form")}
    options = RewriteOptions(steps=args.steps, activations=("gelu",))
    spiking = rewrite_model(native["Gelu"], options)[0]
    gated = rewrite_model(native["Gelu"], replace(options, activation_form="gated"))[0]
    sessions = {form: session(m, provider, False) for form, m in native.items()}
    sessions["spiking"] = session(spiking, provider)
    sessions["gated"] = session(gated, provider)  # the gate set, attribute gate=1: x * the neuron
    if provider == "cpu":
        sessions["Gelu 1 thread"] = session(native["Gelu"], provider, False, threads=1)
        sessions["spiking 1 thread"] = session(spiking, provider, threads=1)
    ms = time_calls({name: caller(sess, x, provider) for name, sess in sessions.items()}, args.repeat)
    text = (
        f"{provider:4} {label:34} Gelu op {ms['Gelu']:7.3f} ms | Erf form {ms['Erf form']:7.3f} ms | "
        f"SpikingActivation {ms['spiking']:7.3f} ms ({ms['spiking'] / ms['Gelu']:.2f}x the Gelu op, "
        f"{ms['spiking'] / ms['Erf form']:.2f}x the Erf form) | gated {ms['gated']:7.3f} ms "
        f"({ms['gated'] / ms['Gelu']:.2f}x the Gelu op)"
    )
    if provider == "cpu":
        text += f" | 1 thread: {ms['spiking 1 thread'] / ms['Gelu 1 thread']:.2f}x"
    print(text, flush=True)


def bench_transformer(args):
    import torch

    from sit_onnx.export import export_module

    torch.manual_seed(0)
    encoder = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(256, 8, 1024, dropout=0.0, batch_first=True), 4, enable_nested_tensor=False
    )
    with tempfile.TemporaryDirectory() as scratch:
        original = export_module(encoder, torch.randn(8, 128, 256), Path(scratch) / "enc.onnx", opset=17)
    chain, _ = rewrite_model(original, RewriteOptions(steps=args.steps))
    fused, _ = rewrite_model(original, RewriteOptions(steps=args.steps, fuse=True))
    x = np.random.default_rng(0).normal(size=(8, 128, 256)).astype(np.float32)
    models = {"original": (original, False), "chain, kernels": (chain, True), "fused, kernels": (fused, True)}
    ms = time_calls({name: caller(session(m, "cpu", lib), x, "cpu") for name, (m, lib) in models.items()}, args.repeat)
    base = ms.pop("original")
    fallback = time_calls({"f": caller(session(chain, "cpu", False), x, "cpu")}, max(3, args.repeat // 4))["f"]
    results = {**ms, "chain, function fallback": fallback}
    print(
        f"cpu  4-layer encoder (d=256, 8 heads, 8x128 tokens): original {base:.2f} ms | "
        + " | ".join(f"{k} {v:.2f} ms ({v / base:.2f}x)" for k, v in results.items()),
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="skip the whole-model benchmark")
    parser.add_argument("--gpu-only", action="store_true", help="only the CUDA benchmarks")
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, K={args.steps}, median of {args.repeat} runs")
    if not args.gpu_only:
        bench_tensors(args, "cpu")
        bench_activation(args, "cpu")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        bench_tensors(args, "cuda")
        bench_activation(args, "cuda")
    else:
        print("cuda through onnxruntime: skipped (no CUDAExecutionProvider in this onnxruntime)")
    from tests.cuda_harness import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        bench_cuda_kernels(args)
    else:
        print(f"cuda kernels through the test harness: skipped ({reason})")
    if not args.quick and not args.gpu_only:
        bench_transformer(args)


if __name__ == "__main__":
    main()
