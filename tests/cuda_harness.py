"""The CUDA launchers without onnxruntime-gpu: libsit_cuda_harness, built beside the custom-op
library whenever nvcc is present, driven through ctypes on torch's CUDA tensors. Lets the
kernels be checked and timed on a GPU machine whose onnxruntime has no CUDA provider."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from sit_onnx.neurons import NeuronParams

ROOT = Path(__file__).resolve().parents[1]


def harness_path() -> Path | None:
    """SIT_CUDA_HARNESS, else the newest build under build/."""
    if os.environ.get("SIT_CUDA_HARNESS"):
        return Path(os.environ["SIT_CUDA_HARNESS"])
    found = sorted(ROOT.glob("build/*/custom_ops/libsit_cuda_harness.so"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def unavailable_reason() -> str | None:
    """Why the harness cannot run here, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU here (torch sees none): the CUDA kernels are compiled, not run"
    if harness_path() is None:
        return "libsit_cuda_harness.so is not built (it is built with the library when nvcc is present)"
    return None


def _split(shape, axis):
    axis = axis % len(shape)
    return int(np.prod(shape[:axis], dtype=np.int64)), int(shape[axis]), int(np.prod(shape[axis + 1 :], dtype=np.int64))


class Harness:
    """SI-exp, SI-norm and the fused Spiking-Softmax on torch CUDA tensors (float32 or float16).

    Each op takes `repeats` (runs of the kernel, for timing) and `elapsed` (a ctypes.c_float that
    receives the mean milliseconds per run, measured with CUDA events); `time_ms` wraps the two.
    """

    def __init__(self, path: Path | None = None):
        self.lib = ctypes.CDLL(str(path or harness_path()))
        self.lib.sit_harness_error.restype = ctypes.c_char_p
        i64, ptr, floats, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int
        timing = [i32, ctypes.POINTER(ctypes.c_float)]
        self.lib.sit_harness_exp.argtypes = [ptr, ptr, ptr, i64, floats, floats, floats, i32, i32, *timing]
        self.lib.sit_harness_activation.argtypes = [ptr, ptr, ptr, i64, floats, floats, floats, i32, floats, i32]
        self.lib.sit_harness_activation.argtypes += timing
        self.lib.sit_harness_norm.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i32, *timing]
        self.lib.sit_harness_softmax.argtypes = [ptr, ptr, ptr, i64, i64, i64, floats, floats, floats, i32, i64]
        self.lib.sit_harness_softmax.argtypes += [i32, i32, i32, *timing]
        self.lib.sit_harness_copy.argtypes = [ptr, ptr, ptr, i64, *timing]

    def _call(self, fn, *args, repeats=1, elapsed=None):
        if fn(*args, repeats, ctypes.byref(elapsed) if elapsed is not None else None) != 0:
            raise RuntimeError(self.lib.sit_harness_error().decode())

    @staticmethod
    def _io(x):
        import torch

        x = x.contiguous()
        y = torch.full_like(x, float("nan"))  # NaN, not whatever memory held: an unwritten output fails
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        return x, y, stream, int(x.dtype == torch.float16)

    @staticmethod
    def _params(params):
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (params.thresholds, params.resets, params.weights)]
        pointers = [a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) for a in arrays]
        return arrays, pointers, params.steps

    def exp(self, x, params: NeuronParams, **timing):
        x, y, stream, half = self._io(x)
        _alive, (t, h, d), k = self._params(params)  # the arrays must outlive the call
        self._call(self.lib.sit_harness_exp, stream, x.data_ptr(), y.data_ptr(), x.numel(), t, h, d, k, half, **timing)
        return y

    def activation(self, x, params, **timing):
        """SpikingActivation with an ActivationParams set."""
        x, y, stream, half = self._io(x)
        _alive, (t, h, d), k = self._params(params.neuron)
        lo, hi = params.input_range
        act = np.array([lo, hi, params.bias, *params.tails, float(params.gate)], dtype=np.float32)
        a = act.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        self._call(
            self.lib.sit_harness_activation,
            stream,
            x.data_ptr(),
            y.data_ptr(),
            x.numel(),
            t,
            h,
            d,
            k,
            a,
            half,
            **timing,
        )
        return y

    def norm(self, w, axis=-1, time_steps=0, **timing):
        w, y, stream, half = self._io(w)
        if w.numel():
            split = _split(w.shape, axis)
            self._call(
                self.lib.sit_harness_norm, stream, w.data_ptr(), y.data_ptr(), *split, time_steps, half, **timing
            )
        return y

    def softmax(self, x, params: NeuronParams, axis=-1, time_steps=0, shift=True, sigmoid=False, **timing):
        x, y, stream, half = self._io(x)
        _alive, (t, h, d), k = self._params(params)
        if x.numel():
            split = _split(x.shape, axis)
            args = (t, h, d, k, time_steps, int(shift), int(sigmoid), half)
            self._call(self.lib.sit_harness_softmax, stream, x.data_ptr(), y.data_ptr(), *split, *args, **timing)
        return y

    def copy(self, x, **timing):
        """A plain device-to-device copy: the bandwidth baseline."""
        x, y, stream, _ = self._io(x)
        self._call(
            self.lib.sit_harness_copy, stream, x.data_ptr(), y.data_ptr(), x.numel() * x.element_size(), **timing
        )
        return y

    def time_ms(self, op, *args, repeats=20, **kwargs) -> float:
        """Mean milliseconds per run of `op` (one of the methods above), after one warm-up run."""
        op(*args, **kwargs)
        elapsed = ctypes.c_float()
        op(*args, repeats=repeats, elapsed=elapsed, **kwargs)
        return elapsed.value
