"""Data of many rows through a model a batch at a time (every command that reads data). A model
exported with a fixed batch (torch.onnx.export without dynamic axes declares [1, ...]) takes that
many rows per run: the data is cut to it, the last batch padded with copies of its last row, and
the padding's outputs dropped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import onnxruntime as ort

from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.datasets import batch_of, data_rows, fed_whole
from sit_onnx.runtime.session import run_by_name, run_session


def fed_whole_to(session: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> set[str]:
    """The arrays given whole with every batch: inputs declared with every dim fixed (a table [4, 3],
    a flag [1], a scalar []) whose array has the declared first dim (is 0-d for a scalar)."""
    fixed = {
        spec.name: spec.shape[0] if spec.shape else None
        for spec in session.get_inputs()
        if all(isinstance(d, int) for d in spec.shape)
    }
    return fed_whole({k: v for k, v in arrays.items() if k in fixed}, fixed)


def feed_rows(session: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> int:
    """The data's rows, counted on the arrays the model takes and is not fed whole: a table [4, 3]
    beside 2 rows of data counted 4, and was then cut into batches in their place. Where every
    array is fed whole (a fixed-batch model given its one batch), the fewest rows."""
    taken = {i.name: arrays[i.name] for i in session.get_inputs() if i.name in arrays}
    whole = fed_whole_to(session, taken)
    per_row = {k: v for k, v in taken.items() if k not in whole}
    if any(v.ndim for v in per_row.values()):
        return data_rows(per_row)
    return min((v.shape[0] for v in taken.values() if v.ndim), default=0)


def fixed_batch(session: ort.InferenceSession, feeds: dict[str, np.ndarray], rows: int) -> int | None:
    """The batch size the model declares fixed where the data holds another number of rows, else
    None. Inputs fed whole (a merged decoder's `use_cache_branch` [1]) do not count."""
    sizes = {
        spec.shape[0]
        for spec in session.get_inputs()
        if spec.shape and isinstance(spec.shape[0], int) and spec.name in feeds
        if feeds[spec.name].ndim and feeds[spec.name].shape[0] == rows != spec.shape[0]
    }
    if len(sizes) > 1:
        raise SitOnnxError(f"the model's inputs fix different batch sizes ({', '.join(map(str, sorted(sizes)))})")
    return sizes.pop() if sizes else None


def _padded(part: dict[str, np.ndarray], per_row: set[str], size: int) -> dict[str, np.ndarray]:
    """Per-row arrays grown to `size` rows by repeating their last row."""

    def grow(v):
        return np.concatenate([v, np.repeat(v[-1:], size - v.shape[0], axis=0)])

    return {k: grow(v) if k in per_row and v.shape[0] < size else v for k, v in part.items()}


def run_in_batches(
    session: ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    rows: int,
    batch: int,
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(rows in the batch, outputs) per batch of `batch` rows, or of the model's fixed batch where it
    has one; outputs of a padded batch cut back to its own rows."""
    fixed = fixed_batch(session, feeds, rows)
    size = fixed or batch
    whole = fed_whole_to(session, feeds)
    per_row = {k for k, v in feeds.items() if v.ndim and v.shape[0] == rows and k not in whole}
    for start in range(0, rows, size):
        count = min(size, rows - start)
        part = batch_of(feeds, per_row, start, size)
        outputs = run(_padded(part, per_row, size) if fixed else part)
        if fixed and count < size:
            outputs = [v[:count] if _has_rows(v, size) else v for v in outputs]
        yield count, outputs


def run_all_rows(session: ort.InferenceSession, feeds: dict[str, np.ndarray], label: str) -> dict[str, np.ndarray]:
    """Every output by name on all the rows of `feeds`: one run, or one per fixed batch joined along
    the first axis (an output without the batch's rows there, from the first batch)."""
    rows = feed_rows(session, feeds)
    fixed = fixed_batch(session, feeds, rows)
    if fixed is None:
        return run_by_name(session, feeds, label)
    if rows == 0:  # no batch to run, nothing to take the outputs' shapes from
        raise SitOnnxError(f"{label}: the data holds no rows, and the model's batch is fixed at {fixed}")
    parts = list(run_in_batches(session, feeds, rows, rows, lambda part: run_session(session, part, label)))
    return join_batches([o.name for o in session.get_outputs()], parts)


def join_batches(names: list[str], parts: list[tuple[int, list]]) -> dict:
    """Each output joined along the first axis over the batches (count, outputs) that ran; an output
    without its batch's rows there (a scalar, a table, a sequence of another length) from the first."""
    joined = {}
    for i, name in enumerate(names):
        values = [outputs[i] for _, outputs in parts]
        rows_first = all(_has_rows(v, count) for v, (count, _) in zip(values, parts))
        joined[name] = np.concatenate(values) if rows_first else values[0]
    return joined


def _has_rows(value, count: int) -> bool:
    return isinstance(value, np.ndarray) and value.ndim > 0 and value.shape[0] == count
