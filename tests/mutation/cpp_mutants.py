"""Scripted C++ kernel mutations: realistic single-point bugs in the CPU kernels and attribute
checks, each built into its own copy of the library (CPU only) and run against the kernel tests.
A mutant is killed when the tests fail. `make mutation` runs it after mutmut.

    python tests/mutation/cpp_mutants.py [--only NAME] [--keep-going]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "mutation"
TESTS = [
    "tests/runtime/test_kernels.py",
    "tests/runtime/test_activation_kernels.py",
    "tests/runtime/test_fuzz.py",
    "tests/runtime/test_session.py",
]

# (name, file, original, mutated): each `original` occurs exactly once in its file.
MUTANTS = [
    (
        "avx512 >= becomes >",
        "cpu/simd_avx512.cc",
        "_mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)",
        "_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)",
    ),
    ("avx2 >= becomes >", "cpu/simd_avx2.cc", "_mm256_cmp_ps(a, b, _CMP_GE_OQ)", "_mm256_cmp_ps(a, b, _CMP_GT_OQ)"),
    (
        "portable >= becomes >",
        "cpu/simd_portable.cc",
        "static M AtLeast(V a, V b) { return a >= b; }",
        "static M AtLeast(V a, V b) { return a > b; }",
    ),
    ("avx512 reset adds", "cpu/simd_avx512.cc", "_mm512_mask_sub_ps(a, m, a, b)", "_mm512_mask_add_ps(a, m, a, b)"),
    (
        "avx2 output weight ignores the mask",
        "cpu/simd_avx2.cc",
        "return _mm256_fmadd_ps(b, z, a); }",
        "return _mm256_add_ps(a, b); }",
    ),
    (
        "avx2 reset ignores the spike",
        "cpu/simd_avx2.cc",
        "return _mm256_fnmadd_ps(b, z, a); }",
        "return _mm256_sub_ps(a, b); }",
    ),
    (
        "avx2 spike as the raw mask",
        "cpu/simd_avx2.cc",
        "_mm256_and_ps(_mm256_cmp_ps(a, b, _CMP_GE_OQ), _mm256_set1_ps(1.f))",
        "_mm256_cmp_ps(a, b, _CMP_GE_OQ)",
    ),
    ("portable NaN not kept", "cpu/simd_portable.cc", "return Select(in != in, in, out); }", "return out; }"),
    (
        "avx512 NaN not kept",
        "cpu/simd_avx512.cc",
        "_mm512_mask_mov_ps(out, _mm512_cmp_ps_mask(in, in, _CMP_UNORD_Q), in)",
        "out",
    ),
    ("V_th <= 0 guard weakened", "cpu/row_kernels.h", "if (!(v_th > 0.f)) {", "if (!(v_th >= 0.f)) {"),
    (
        "amplified scale by a wrong factor",
        "cpu/row_kernels.h",
        "const V inverse = S::Set(1.f / v_th);",
        "const V inverse = S::Set(1.f / (v_th + 1.f));",
    ),
    (
        "spike count rounds instead of floor",
        "cpu/row_kernels.h",
        "S::Floor(S::Mul(S::Div(a, threshold), count))",
        "S::Round(S::Mul(S::Div(a, threshold), count))",
    ),
    ("negative counts not clipped", "cpu/row_kernels.h", "S::Max(zero, S::Floor(", "S::Min(zero, S::Floor("),
    (
        "row max starts at 0",
        "cpu/row_kernels.h",
        "V best[4] = {S::Set(-__builtin_inff()), S::Set(-__builtin_inff()),",
        "V best[4] = {S::Set(0.f), S::Set(-__builtin_inff()),",
    ),
    (
        "row sum tail filled with 1",
        "cpu/row_kernels.h",
        "if (i < n) total[1] = S::Add(total[1], S::LoadPart(x + i, n - i, 0.f));",
        "if (i < n) total[1] = S::Add(total[1], S::LoadPart(x + i, n - i, 1.f));",
    ),
    ("sigmoid of +x", "cpu/row_kernels.h", "Exp(S::Sub(S::Set(0.f), a))", "Exp(a)"),
    (
        "shift adds the max",
        "cpu/row_kernels.h",
        "Map(x, y, n, [&](V a) { return S::Sub(a, off); });",
        "Map(x, y, n, [&](V a) { return S::Add(a, off); });",
    ),
    (
        "tail lanes leak into the total",
        "cpu/row_kernels.h",
        "acc[r] = S::Blend(S::Set(0.f), acc[r], left);",
        "(void)left;",
    ),
    (
        "fused long rows ignore the shift",
        "cpu/spiking_cpu.cc",
        "const float offset = s.shift ? ops.max(in + r * n, n) : 0.f;",
        "const float offset = 0.f;",
    ),
    (
        "SI-norm uses the first row's sum",
        "cpu/spiking_cpu.cc",
        "ops.scale(w + r * n, y + r * n, n, ops.sum(w + r * n, n), steps);",
        "ops.scale(w + r * n, y + r * n, n, ops.sum(w, n), steps);",
    ),
    (
        "column gather transposed",
        "cpu/spiking_cpu.cc",
        "buffer[c * n + i] = ToFloat(x[offset + i * s.inner + c]);",
        "buffer[c * n + i] = ToFloat(x[offset + c * s.inner + i]);",
    ),
    (
        "K = 65 accepted",
        "spiking_attrs.cc",
        "k > static_cast<size_t>(kMaxSteps)",
        "k > static_cast<size_t>(kMaxSteps) + 1",
    ),
    ("weights length unchecked", "spiking_attrs.cc", "resets.size() != k || weights.size() != k", "resets.size() != k"),
    ("NaN steps accepted", "spiking_attrs.cc", "!std::isfinite(thresholds[t]) || ", ""),
    (
        "axis == rank accepted",
        "spiking_attrs.cc",
        "(axis < -rank || axis >= rank || rank == 0)) {\n    return",
        "(axis < -rank || axis > rank || rank == 0)) {\n    return",
    ),
    ("negative time_steps accepted", "spiking_attrs.cc", "if (time_steps < 0) return", "if (time_steps < -100) return"),
    (
        "sigmoid=2 accepted",
        "include/spiking_op.h",
        "sigmoid_attr < 0 || sigmoid_attr > 1",
        "sigmoid_attr < 0 || sigmoid_attr > 2",
    ),
    (
        "wrongly typed int attribute defaulted",
        "include/spiking_op.h",
        'if (HasAttribute(raw, name)) return std::string(name) + " must be an int',
        'if (false) return std::string(name) + " must be an int',
    ),
    (
        "wrongly typed float attribute defaulted",
        "include/spiking_op.h",
        'if (HasAttribute(raw, name)) return std::string(name) + " must be a float',
        'if (false) return std::string(name) + " must be a float',
    ),
    (
        "activation: x == low goes to the tail",
        "cpu/row_kernels.h",
        "S::Greater(low, in), below",
        "S::AtLeast(low, in), below",
    ),
    (
        "activation: a flat tail computed as a line (0 * -inf)",
        "cpu/row_kernels.h",
        "const V below = flat_lo ? c_lo : S::Add(S::Mul(s_lo, in), c_lo);",
        "const V below = S::Add(S::Mul(s_lo, in), c_lo);",
    ),
    ("activation: bias dropped", "cpu/row_kernels.h", "S::Add(acc, bias))", "acc)"),
    (
        "activation: float16 block computed in place",
        "cpu/spiking_cpu.cc",
        "fn(buffer.data(), buffer.data() + size, size);",
        "fn(buffer.data(), buffer.data(), size);",
    ),
    (
        "avx512 FMA step subtracts the weight",
        "cpu/simd_avx512.cc",
        "_mm512_mask3_fmadd_ps(b, Set(1.f), a, m)",
        "_mm512_mask3_fnmadd_ps(b, Set(1.f), a, m)",
    ),
    (
        "a partial last group read as whole",
        "cpu/row_kernels.h",
        "if (count == R * W) return StepVectors<R, true>",
        "if (count > (R - 1) * W) return StepVectors<R, true>",
    ),
    (
        "shared groups: every vector shifted by the group's first row",
        "cpu/row_kernels.h",
        "S::Set(offsets[row])",
        "S::Set(offsets[first / vectors_per_row])",
    ),
    (
        "shared groups: the next row's outputs added to this row's sum",
        "cpu/row_kernels.h",
        "totals[row++] = total, at = 0, total = totals[row];",
        "at = 0;",
    ),
    (
        "shared groups: maxima of the first chunk reused",
        "cpu/spiking_cpu.cc",
        "offsets[r] = s.shift ? ops.max(in + (first + r) * n, n) : 0.f;",
        "offsets[r] = s.shift ? ops.max(in + r * n, n) : 0.f;",
    ),
    (
        "shared groups: rows shifted by their maximum without shift",
        "cpu/spiking_cpu.cc",
        "offsets[r] = s.shift ? ops.max(in + (first + r) * n, n) : 0.f;",
        "offsets[r] = ops.max(in + (first + r) * n, n);",
    ),
    (
        "shared groups: rows not of whole vectors sent to them",
        "cpu/spiking_cpu.cc",
        "n % ops.shared_row_width == 0",
        "n % ops.shared_row_width <= 1",
    ),
    ("activation: low == high accepted", "spiking_attrs.cc", "!(low < high)", "!(low <= high)"),
    ("activation: 5 tails accepted", "spiking_attrs.cc", "if (tails.size() != 4)", "if (tails.size() < 4)"),
    (
        "a list of another type read as empty, passed on",
        "include/spiking_op.h",
        'return out->empty() ? std::string(name) + " must be a non-empty list of floats" : "";',
        'return "";',
    ),
    (
        "a missing list reported as wrongly typed",
        "include/spiking_op.h",
        "if (HasAttribute(info, name)) return",
        "if (true) return",
    ),
]


def ort_headers() -> Path:
    for candidate in [ROOT / ".ort-headers", *sorted(ROOT.glob("build/*/ort-headers/include"))]:
        if (candidate / "onnxruntime_c_api.h").is_file():
            return candidate
    sys.exit("no onnxruntime headers: build the package first (pip install -e .)")


def build() -> bool:
    result = subprocess.run(
        ["cmake", "--build", str(BUILD), "-j", str(os.cpu_count() or 2), "--target", "sit_onnx_ops"],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def tests_pass() -> bool:
    env = {**os.environ, "SIT_ONNX_OPS_LIBRARY": str(BUILD / "libsit_onnx_ops.so")}  # custom_ops/ is the root here
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not gpu", *TESTS]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="run the mutants whose name contains this")
    args = parser.parse_args()
    configure = ["cmake", "-S", str(ROOT / "custom_ops"), "-B", str(BUILD), "-DSIT_ONNX_CUDA=OFF"]
    subprocess.run([*configure, f"-DORT_INCLUDE_DIR={ort_headers()}"], check=True, capture_output=True)
    if not build() or not tests_pass():
        sys.exit("the unmutated library does not build or pass the tests: nothing to measure")
    killed, survivors, invalid = 0, [], []
    chosen = [m for m in MUTANTS if args.only is None or args.only in m[0]]
    for name, relative, original, mutated in chosen:
        path = ROOT / "custom_ops" / relative
        source = path.read_text()
        assert source.count(original) == 1, f"{name}: the original text is not unique in {relative}"
        try:
            path.write_text(source.replace(original, mutated))
            builds = build()
            dead = builds and not tests_pass()
        finally:
            path.write_text(source)
        if not builds:  # a mutant the compiler refuses is a broken mutant, not a test's catch
            invalid.append(name)
            print(f"INVALID  {name} (does not build)", flush=True)
            continue
        killed += dead
        if not dead:
            survivors.append(name)
        print(f"{'killed  ' if dead else 'SURVIVED'} {name}", flush=True)
    build()  # leave the mutation build unmutated
    valid = len(chosen) - len(invalid)
    print(f"C++ mutants: {killed} of {valid} killed ({100 * killed / max(valid, 1):.0f}%), {len(invalid)} invalid")
    for name in survivors:
        print(f"  survivor: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
