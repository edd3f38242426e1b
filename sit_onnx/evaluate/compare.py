"""Compare two models output by output, in the manner of Polygraphy's comparator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OutputComparison:
    name: str
    shape: list[int]
    atol: float
    rtol: float
    max_abs: float
    mean_abs: float
    median_abs: float
    max_rel: float
    mean_rel: float
    median_rel: float
    cosine: float
    min_atol_to_pass: float  # with rtol as given
    passed: bool


def compare_arrays(name: str, a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> OutputComparison:
    """`passed` when |a-b| <= atol + rtol*|a| everywhere (a is the reference)."""
    if a.shape != b.shape:
        return OutputComparison(
            name, list(a.shape), atol, rtol, *([float("inf")] * 6), float("nan"), float("inf"), False
        )
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = np.abs(a64 - b64)
    rel = diff / np.maximum(np.abs(a64), 1e-12)
    norm = np.linalg.norm(a64) * np.linalg.norm(b64)
    cosine = float(np.dot(a64.ravel(), b64.ravel()) / norm) if norm > 0 else float(np.array_equal(a64, b64))
    stats = [float(f(x)) if x.size else 0.0 for x in (diff, rel) for f in (np.max, np.mean, np.median)]
    needed = float(np.max(diff - rtol * np.abs(a64))) if diff.size else 0.0
    return OutputComparison(
        name,
        list(a.shape),
        atol,
        rtol,
        stats[0],
        stats[1],
        stats[2],
        stats[3],
        stats[4],
        stats[5],
        cosine,
        max(needed, 0.0),
        bool(np.all(diff <= atol + rtol * np.abs(a64))),
    )
