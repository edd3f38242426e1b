"""Compare two models output by output, in the manner of Polygraphy's comparator."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.detections import DetectionFigures

INF = float("inf")
ARGMAX, VALUES = "argmax", "values"  # what an output's `agreement` counts: rows deciding alike, or equal values
AGREEMENT_LABELS = {ARGMAX: "argmax agreement", VALUES: "values the same"}
MAP_CHANNELS = -3  # the argmax axis of a dense map of the input image: its channels, per pixel


def agreement_label(agreement_of: str, argmax_axis: int | None) -> str:
    """What an agreement figure counts, in a column header or before the figure: rows deciding
    alike (an image map's pixels), or an integer output's equal values."""
    return AGREEMENT_LABELS[agreement_of] + (" per pixel" if argmax_axis == MAP_CHANNELS else "")


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
    problem: str | None = None  # why the outputs could not be compared element by element
    agreement: float | None = None  # share of decided rows whose argmax agrees; None for 0-D/1-D, 1-channel maps
    ties: ArgmaxTies | None = None  # how close the reference's own choice was where the argmax changed
    constant: float | None = None  # the reference's one value where all its elements are equal (shows nothing)
    argmax_axis: int | None = None  # the axis `agreement` is taken along (-3: an image map's channels)
    detections: DetectionFigures | None = None  # a detector's output: its detections matched (detections.py)
    agreement_of: str = ARGMAX  # VALUES for integer and bool outputs: `agreement` is the share of equal elements
    rows_same: list[int] | None = None  # integer outputs of rank >= 2: [rows equal along the last axis, rows]


@dataclass
class ArgmaxTies:
    """Where the argmax changed, how close the reference's own choice was: its top-1's lead over
    its top-2 as a share of the row's range (max - min). A flip where that lead is a few percent is a
    near-tie the conversion's error tipped, not a lost decision; rows whose lead is below
    `min_margin` are not counted as decisions at all."""

    disagreements: int  # decided rows whose argmax differs
    widest_flipped_margin: float | None  # the largest lead among those rows (None: no row flipped)
    undecided: int  # rows whose lead is below min_margin, left out of the agreement
    min_margin: float


def argmax_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Share of rows (all axes but the last) whose largest entry is in the same place: what a
    classifier's or a language model's next-token decision sees. None when there are no rows."""
    found = argmax_figures(a, b, 0.0)
    return None if found is None else found[0]


def argmax_figures(
    a: np.ndarray, b: np.ndarray, min_margin: float, axis: int = -1
) -> tuple[float | None, ArgmaxTies] | None:
    """(agreement over the rows along `axis` the reference decides by at least `min_margin` of the
    row's range, the near-tie figures), or None when there are no rows. Agreement is None when no
    row decides."""
    if a.ndim < 2 or a.shape != b.shape or a.size == 0:
        return None
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    rows_a, rows_b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    same = np.argmax(rows_a, axis=-1) == np.argmax(rows_b, axis=-1)
    margin = _lead(rows_a)
    decided = margin >= min_margin
    flipped = margin[decided & ~same]
    widest = float(flipped.max()) if flipped.size else None
    ties = ArgmaxTies(int((decided & ~same).sum()), widest, int((~decided).sum()), min_margin)
    return (float(np.mean(same[decided])) if decided.any() else None), ties


def _lead(rows: np.ndarray) -> np.ndarray:
    """Each row's top-1 lead over its top-2 as a share of its range: 0 for a tie (and a row holding
    NaN, which decides nothing), 1 for one-hot. A row of two entries has its lead for its range, so
    there the share is of the whole output's range (a two-class head's [0.5001, 0.4999] is a tie)."""
    if rows.shape[-1] == 1:
        return np.ones(rows.shape[0])
    top = -np.partition(-rows, 1, axis=-1)[:, :2]
    spread = top[:, 0] - rows.min(axis=-1)
    if rows.shape[-1] == 2:
        finite = rows[np.isfinite(rows)]
        spread = np.full(rows.shape[0], float(finite.max() - finite.min()) if finite.size else 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lead = (top[:, 0] - top[:, 1]) / spread
    return np.where((spread > 0) & np.isfinite(lead), lead, 0.0)


def describe_agreement(agreement: float | None, ties: ArgmaxTies) -> str:
    """One line: the agreement, the rows left out as near-ties, and how close the reference's
    choice was in the rows that flipped."""
    left_out = f" ({ties.undecided} led by under {100 * ties.min_margin:g}% of their range not counted)"
    if agreement is None:
        return f"argmax agreement: no row decided{left_out}"
    line = f"argmax agreement {100 * agreement:.2f}% of rows" + (left_out if ties.undecided else "")
    if ties.disagreements:
        line += (
            f"; the reference's top-1 led by at most {100 * ties.widest_flipped_margin:.3g}% of the row's range"
            f" in the {ties.disagreements} that differ"
        )
    return line


CACHE_PREFIXES = ("present", "past")  # a decoder's key/value cache, as exporters name it
FEATURE_WORDS = ("embed", "hidden", "pooler", "feature", "memory")  # text_embeds, last_hidden_state, ...
STATE_WORDS = {"state", "states", "hn", "cn", "h_n", "c_n"}  # a recurrent step's state, whole words only


def decides(name: str) -> bool:
    """Whether an output's argmax is a decision (logits, scores): not a KV cache (optimum's
    `present.0.key`, onnxruntime's `present_key`), a recurrent state handed to the next step
    (`hidden_out`, `new_state`, an LSTM's `h_n`), an encoder's memory, nor an embedding or hidden
    state (`text_embeds`, `last_hidden_state`, `pooler_output`), whose largest feature means
    nothing; their argmax is near-ties of projections and judges nothing."""
    lowered = name.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered)) | set(re.findall(r"(?<![a-z0-9])[hc]_n(?![a-z0-9])", lowered))
    return (
        not lowered.startswith(CACHE_PREFIXES)
        and not any(word in lowered for word in FEATURE_WORDS)
        and not words & STATE_WORDS
    )


def image_sizes(feeds: dict[str, np.ndarray]) -> set[tuple[int, int]]:
    """(height, width) of every input that is a batch of images (float, N x C x H x W)."""
    return {
        tuple(value.shape[-2:])
        for value in feeds.values()
        if value.ndim == 4 and np.issubdtype(value.dtype, np.floating) and min(value.shape[-2:]) > 1
    }


def decision_axis(shape: tuple[int, ...], images: set[tuple[int, int]]) -> int | None:
    """The axis an output's argmax decides along: the last, except for a dense map of an input
    image (its last two dims the image's height and width, or both divided by one stride:
    segmentation, depth, saliency), whose rows along the last axis are pixels of one line. There it
    is the channel axis before them (a class per pixel), and none for a map of one channel."""
    if len(shape) < 3 or not all(shape[-2:]):
        return -1
    h, w = shape[-2:]
    if not any(height % h == 0 and width % w == 0 and height // h == width // w for height, width in images):
        return -1
    return MAP_CHANNELS if len(shape) >= 4 and shape[-3] > 1 else None


def approximately_equal(result: "OutputComparison", min_cosine: float, min_agreement: float) -> bool:
    """The default verdict for a spiking conversion, which is approximate by design: the outputs
    point the same way (cosine) and, where rows have an argmax that decides something (not a
    KV cache, a recurrent state or an embedding), decide the same (agreement). A detector's
    output finds the same detections (both ways, as a share >= min_agreement); its end-to-end list, sorted by score, is
    not asked for a cosine (a low score's change reorders its rows)."""
    if result.problem is not None:
        return False
    if result.agreement_of == VALUES:  # ids, labels, counts: decisions themselves, not magnitudes
        return result.agreement >= min_agreement
    found = result.detections
    if found is not None:
        same = min(found.recall, found.precision) >= min_agreement
        return same and (found.kind == "end2end" or result.cosine >= min_cosine)
    if not result.cosine >= min_cosine:
        return False
    return result.agreement is None or not decides(result.name) or result.agreement >= min_agreement


def _length_change(a: tuple, b: tuple) -> str:
    """Where one axis alone differs (a length the model computed: a TTS voice's durations), by how
    much, relative to the reference's."""
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y] if len(a) == len(b) else []
    if len(differ) != 1 or not a[differ[0]]:
        return ""
    axis = differ[0]
    return f" (axis {axis}: {b[axis] - a[axis]:+d}, {(b[axis] - a[axis]) / a[axis]:+.1%})"


def check_comparable(outputs: dict, label: str) -> None:
    """Refuse an output no statistic here can judge: a sequence of maps, or of tensors that differ
    in shape (a sequence of like tensors arrives stacked: runtime/session.py)."""
    for name, value in outputs.items():
        if not isinstance(value, np.ndarray):
            others = sorted({type(v).__name__ for v in value if not isinstance(v, np.ndarray)})
            what = f"{', '.join(others)} items" if others else "tensors of different shapes" if value else "nothing"
            raise SitOnnxError(f"{label}: its output {name!r} is a sequence of {what}, which is not compared")


def compare_arrays(
    name: str,
    a: np.ndarray,
    b: np.ndarray,
    atol: float,
    rtol: float,
    min_margin: float = 0.0,
    axis: int | None = -1,
) -> OutputComparison:
    """`passed` when |a-b| <= atol + rtol*|a| everywhere (a is the reference). A NaN matches a NaN
    in the same place (a converted model keeps its original's NaN), nothing else. `axis`: what the
    argmax decides along (None: nothing, see decision_axis)."""
    if a.shape != b.shape:
        problem = f"shapes differ: {list(a.shape)} vs {list(b.shape)}{_length_change(a.shape, b.shape)}"
        return OutputComparison(name, list(a.shape), atol, rtol, *([INF] * 6), float("nan"), INF, False, problem)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(a64) & np.isnan(b64)
    same_inf = np.isinf(a64) & (a64 == b64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both_nan | same_inf, 0.0, np.abs(a64 - b64))
        diff = np.where(np.isnan(diff), INF, diff)  # NaN on one side only: no tolerance covers it
        rel = diff / np.maximum(np.abs(np.where(np.isfinite(a64), a64, 1.0)), 1e-12)
    finite = np.isfinite(a64) & np.isfinite(b64)
    af, bf = a64[finite], b64[finite]
    norm = np.linalg.norm(af) * np.linalg.norm(bf)
    cosine = float(np.dot(af, bf) / norm) if norm > 0 else float(np.array_equal(af, bf))
    stats = [float(f(x)) if x.size else 0.0 for x in (diff, rel) for f in (np.max, np.mean, np.median)]
    allowance = rtol * np.where(np.isfinite(a64), np.abs(a64), 0.0)
    needed = float(np.max(diff - allowance)) if diff.size else 0.0
    result = OutputComparison(
        name,
        list(a.shape),
        atol,
        rtol,
        *stats,
        cosine,
        max(needed, 0.0),
        bool(np.all(diff <= atol + allowance)),
        constant=constant_value_of(a64),
    )
    if a.dtype.kind in ("i", "u", "b"):
        return _equal_values(result, a, b)
    found = argmax_figures(a64, b64, min_margin, axis) if axis is not None else None
    if found is not None:
        result.agreement, result.ties = found
        result.argmax_axis = axis
    return result


def _equal_values(result: OutputComparison, a: np.ndarray, b: np.ndarray) -> OutputComparison:
    """An integer or bool output (token ids of a generation, labels, durations in frames) is judged by
    how many of its values are the same: an argmax over ids means nothing, and a cosine of ids
    passes a sequence whose tokens changed."""
    equal = a == b
    result.agreement_of = VALUES
    result.agreement = float(equal.mean()) if equal.size else 1.0
    if a.ndim >= 2:
        rows = equal.reshape(-1, a.shape[-1])
        result.rows_same = [int(rows.all(axis=1).sum()), len(rows)]
    return result


def describe_equal_values(result: OutputComparison) -> str:
    """One line for an integer output: its values, and its rows, that stayed the same."""
    differ = round((1 - result.agreement) * int(np.prod(result.shape)))
    line = f"{AGREEMENT_LABELS[VALUES]}: {100 * result.agreement:.2f}% of elements ({differ} differ)"
    if result.rows_same:
        line += f"; rows the same: {result.rows_same[0]} of {result.rows_same[1]}"
    return line


def constant_note(constant: float) -> str:
    """What an output whose every element is one value (NaN included) means for any figure on it."""
    return (
        f"note: every element of the reference's output is {constant:g}: it cannot show what the "
        "conversion changed (compare an earlier tensor, or real weights)"
    )


def constant_value_of(a: np.ndarray) -> float | None:
    """The one value of an output of several elements that are all equal (NaN included: a zeroed
    head, a dead branch), else None. Equal outputs there say nothing of what a conversion changed."""
    flat = a.ravel()
    if flat.size < 2 or not (np.all(flat == flat[0]) or np.all(np.isnan(flat))):
        return None
    return float(flat[0])
