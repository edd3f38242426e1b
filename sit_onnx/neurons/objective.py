"""What a softmax-aware fit minimises: the Spiking-Softmax error on rows of max-shifted logits.

SI-norm divides every weight by the row's sum, so the neuron's scale cancels: what a
softmax sees is exp's *relative* error, and only where the row's probability mass lies.
The largest logit of every max-shifted row is exactly 0, so that one point weighs most.

`RowSet` holds rows of logits (a parametric family, or real logits captured at a site),
flattened with a row index. Two views of the same rows:
- `least_squares_weights`: per-element weights of the residual `f(x) - exp(x)` that make the
  weighted squared error the first-order squared error of the attention weights. The output
  weights d(t) are solved with them (the output stays linear in d);
- `score`: the true figures on the stepped neuron: mean KL(p || q), mean L1 error of a row, mean
  and largest worst weight error; `value` (L1 + mean worst) is what the polish minimises and what
  calibration compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILY_LENGTHS = (2, 3, 4, 6, 8, 16, 32, 64, 128, 197, 256, 512)
FAMILY_SIGMAS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
FAMILY_ELEMENTS = 2_000  # per (length, sigma) pair: ~170,000 elements in all
KL_WEIGHT = 0.1  # of the mean KL in the polished value (see RowScore.value)
Q_FLOOR = 1e-12  # a weight of exactly 0 counts as this in KL (as quality.mean_kl does)


@dataclass(frozen=True)
class RowSet:
    """Max-shifted logits of many rows, flattened; `row` maps each element to its row."""

    x: np.ndarray  # float64, <= 0, every row holds a 0
    row: np.ndarray  # int64 row index per element, rows contiguous
    p: np.ndarray  # the exact softmax of each element within its row
    rows: int
    starts: np.ndarray  # index of each row's first element
    source: str
    weight: np.ndarray | None = None  # per row, how much it counts in the means (None: alike)

    @classmethod
    def from_rows(cls, rows: list[np.ndarray], source: str, weight: np.ndarray | None = None) -> RowSet:
        """From a list of 1-D logit rows (any lengths); rows without a finite value are dropped.
        `weight`: per row, how much it counts (a family weighs each of its row kinds alike)."""
        kept = [r[np.isfinite(r)] for r in (np.asarray(r, dtype=np.float64).ravel() for r in rows)]
        if weight is not None:
            weight = np.asarray(weight, dtype=np.float64)[[r.size > 0 for r in kept]]
        kept = [r - r.max() for r in kept if r.size]
        if not kept:
            raise ValueError("no row holds a finite logit")
        x = np.concatenate(kept)
        row = np.repeat(np.arange(len(kept)), [r.size for r in kept])
        e = np.exp(x)
        p = e / np.bincount(row, e)[row]
        lengths = np.array([r.size for r in kept])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        weight = None if weight is None else weight / weight.mean()
        return cls(x, row, p, len(kept), starts, source, weight)

    def mean(self, per_row: np.ndarray) -> float:
        """The (weighted) mean of one figure per row."""
        return float(np.average(per_row, weights=self.weight))

    def clipped(self, low: float) -> np.ndarray:
        """Which elements lie at or above `low` (below it the neuron outputs 0 by design)."""
        return self.x >= low


def family_rows(seed: int = 0, elements: int = FAMILY_ELEMENTS) -> RowSet:
    """Rows of n = 2..512 logits ~ N(0, sigma^2), sigma = 1..8: short rows of small heads and
    classifiers, long peaked rows of attention. Every (n, sigma) pair weighs alike in the means."""
    rng = np.random.default_rng(seed)
    rows, weight = [], []
    for n in FAMILY_LENGTHS:
        for sigma in FAMILY_SIGMAS:
            count = max(elements // n, 8)
            rows.extend(rng.normal(0.0, sigma, (count, n)))
            weight.extend([1.0 / count] * count)
    source = (
        f"N(0, sigma^2) rows, n={FAMILY_LENGTHS[0]}..{FAMILY_LENGTHS[-1]}, "
        f"sigma={FAMILY_SIGMAS[0]:g}..{FAMILY_SIGMAS[-1]:g}"
    )
    return RowSet.from_rows(rows, source, weight=np.array(weight))


def rows_from_logits(logits: np.ndarray, axis: int, limit: int = 20_000, seed: int = 0) -> RowSet:
    """Rows of a captured logit tensor along `axis` (at most `limit` rows, drawn at random)."""
    moved = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    flat = moved.reshape(-1, moved.shape[-1]) if moved.size else np.zeros((0, 1))
    if flat.shape[0] > limit:
        flat = flat[np.sort(np.random.default_rng(seed).choice(flat.shape[0], limit, replace=False))]
    return RowSet.from_rows(list(flat), f"{flat.shape[0]} captured rows of length {moved.shape[-1]}")


def least_squares_weights(rows: RowSet, low: float) -> np.ndarray:
    """Residual weights of `f(x) - exp(x)` on the elements at or above `low` (zero below it):
    q - p = (f - exp(x)) / S to first order (S the row's sum of exp), so 1/S per element makes the
    weighted squared residual the squared error of the attention weights; times the row's weight.
    Normalised to mean 1 over those elements."""
    inside = rows.clipped(low)
    row_sum = np.bincount(rows.row, np.exp(rows.x), minlength=rows.rows)
    per_row = 1.0 / row_sum if rows.weight is None else np.sqrt(rows.weight) / row_sum
    w = np.where(inside, per_row[rows.row], 0.0)
    return w / w[inside].mean()


@dataclass(frozen=True)
class RowScore:
    kl: float  # mean over rows of KL(p || q)
    l1: float  # mean over rows of sum |q - p| (twice the total variation)
    worst_mean: float  # mean over rows of the row's largest |q - p|
    worst: float  # the largest |q - p| of all rows

    @property
    def value(self) -> float:
        """What the polish minimises: the expected L1 error of a row's weights plus its expected
        worst weight error (what attention's output sum (q - p) v inherits), plus a tenth of the
        expected KL. KL alone charges a tiny weight spiked to 0 like a large one off by half
        (measured: minimising KL + worst cost the bundled ViT 1.7 points at K=4); without it the
        fits zero every weight below e^-8 of the row's largest (KL 10x the exp-RMSE sets')."""
        return self.weighted(KL_WEIGHT)

    def weighted(self, kl_weight: float) -> float:
        """`value` with another weight on the mean KL (`neuron fit --kl-weight`)."""
        return self.l1 + self.worst_mean + kl_weight * self.kl


def score(rows: RowSet, f: np.ndarray) -> RowScore:
    """Spiking-Softmax error of neuron outputs `f` (one per element) against the exact softmax."""
    return RowScorer(rows)(f)


class RowScorer:
    """`score` for many outputs on the same rows, as a polish needs (thousands of candidate sets):
    log p and the element-sized work arrays are made once. Allocating a dozen such arrays per call
    kept the allocator handing pages back to the system and faulting them in again (measured: 40% of
    a softmax fit's time was spent in the kernel)."""

    def __init__(self, rows: RowSet):
        self.rows = rows
        self.log_p = np.log(rows.p, where=rows.p > 0, out=np.zeros_like(rows.p))
        self._q, self._a, self._b = (np.empty_like(rows.x) for _ in range(3))
        self._bad = np.empty(rows.x.shape, dtype=bool)

    def __call__(self, f: np.ndarray) -> RowScore:
        rows, q, a, b = self.rows, self._q, self._a, self._b
        per_element = lambda values, out: np.take(  # noqa: E731 - a row's sum, at each of its elements
            np.bincount(rows.row, values, minlength=rows.rows), rows.row, out=out
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(f, per_element(f, a), out=q)
        np.logical_not(np.isfinite(q, out=self._bad), out=self._bad)
        np.copyto(q, 0.0, where=self._bad)  # a row whose outputs sum to 0 counts as all weight lost
        # KL needs a distribution: a weight below the floor (0, or negative where a set's output dips
        # below 0) counts as the floor, and the row is renormalised
        np.maximum(q, Q_FLOOR, out=b)
        np.divide(b, per_element(b, a), out=b)
        np.multiply(rows.p, np.subtract(self.log_p, np.log(b, out=b), out=b), out=b)
        kl = rows.mean(np.bincount(rows.row, b, minlength=rows.rows))
        err = np.abs(np.subtract(q, rows.p, out=a), out=a)
        return RowScore(
            kl,
            rows.mean(np.bincount(rows.row, err, minlength=rows.rows)),
            rows.mean(np.maximum.reduceat(err, rows.starts)),
            float(err.max()),
        )
