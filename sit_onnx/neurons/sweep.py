"""The paper's Figure 7 and ours: the shipped SI-exp sets for each K, scored on exp (RMSE, the
paper's objective) and as Spiking-Softmax on random rows (our objective: KL and worst weight on
the held-out N(0, sigma^2) family), for the paper's range and both max-shift sets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from sit_onnx.neurons.params import OBJECTIVES, PAPER_RANGE, SHIFT_RANGE, SHIPPED_STEPS, shipped_params
from sit_onnx.neurons.quality import as_dict, exp_quality, row_quality, softmax_quality

SWEEP_LENGTHS = (16, 64, 197)


def sweep(
    steps: Iterable[int] = SHIPPED_STEPS, vectors: int = 2000, progress: Callable[[int], None] | None = None
) -> list[dict]:
    """One row per K: exp RMSE on both ranges, softmax figures per row length and protocol, and
    the row family's figures of the max-shift sets fitted to each objective."""
    rows = []
    for k in steps:
        paper, shifted = shipped_params(k, PAPER_RANGE), shipped_params(k, SHIFT_RANGE)
        objectives = {o: shipped_params(k, SHIFT_RANGE, o) for o in OBJECTIVES}
        rows.append(
            {
                "steps": k,
                "si_exp": as_dict(exp_quality(paper)),
                "si_exp_shift": as_dict(exp_quality(shifted)),
                "objectives": {o: {"exp_rmse": p.rmse, **as_dict(row_quality(p))} for o, p in objectives.items()},
                "softmax": [as_dict(softmax_quality(paper, n, "paper", vectors)) for n in SWEEP_LENGTHS]
                + [as_dict(softmax_quality(shifted, n, "max-shift", vectors)) for n in SWEEP_LENGTHS],
            }
        )
        if progress:
            progress(1)
    return rows


def plot_figure7(rows: list[dict], path: Path) -> None:
    """The paper's Figure 7 from `sweep` rows, as a PNG written atomically."""
    import io

    from sit_onnx.atomic import write_bytes_atomic

    fig = figure7(rows)  # sets the off-screen backend before pyplot is imported here
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def figure7(rows: list[dict]):
    """The three panels, drawn on a matplotlib Figure (off screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["steps"] for r in rows]
    fig, (left, right, ours) = plt.subplots(1, 3, figsize=(15, 4))
    left.semilogy(ks, [r["si_exp"]["rmse"] for r in rows], "o-", label="SI-exp on [-1, 1]")
    left.semilogy(ks, [r["si_exp_shift"]["rmse"] for r in rows], "s-", label=f"SI-exp on [{SHIFT_RANGE[0]:g}, 0]")
    left.set(xlabel="time steps K", ylabel="RMSE vs exp", title="SI-exp")
    left.legend()
    for i, n in enumerate(SWEEP_LENGTHS):
        right.semilogy(ks, [r["softmax"][i]["mse"] for r in rows], "o-", label=f"paper, n={n}")
        right.semilogy(
            ks, [r["softmax"][i + len(SWEEP_LENGTHS)]["mse"] for r in rows], "s--", label=f"max-shift, n={n}"
        )
    right.set(xlabel="time steps K", ylabel="MSE vs softmax", title="Spiking-Softmax")
    right.legend(fontsize=7)
    for objective, marker in zip(OBJECTIVES, "os"):
        figures = [r["objectives"][objective] for r in rows]
        ours.semilogy(ks, [f["kl"] for f in figures], marker + "-", label=f"KL, set fitted to {objective}")
        ours.semilogy(ks, [f["worst"] for f in figures], marker + "--", label=f"worst weight, {objective}")
    ours.set(xlabel="time steps K", ylabel="error on N(0, sigma^2) rows", title="max-shift: both objectives")
    ours.legend(fontsize=7)
    fig.tight_layout()
    return fig
