"""Labelled data for evaluation: an .npz of model inputs plus `labels`, or a bundled data set."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources

import numpy as np

from sit_onnx.errors import SitOnnxError, existing_file
from sit_onnx.evaluate.inputs import load_arrays

DATASETS = ("digits",)
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass
class LabelledData:
    arrays: dict[str, np.ndarray]  # model inputs by name
    labels: np.ndarray | None  # None for unlabelled data (calibrate, energy need none)
    source: str


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (no download), the fixed 80/20 split every experiment uses.

    Images are (N, 1, 8, 8) float32 scaled to [-0.5, 0.5]."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SitOnnxError("the digits data set needs scikit-learn: pip install 'sit-onnx[models]'") from None
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0 - 0.5)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SEED,
        stratify=digits.target,
    )
    return x_train, x_test, y_train, y_test


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split (360 images, (N, 1, 8, 8) float32 in [-0.5, 0.5], and labels), shipped
    with the package as its raw pixels (0-16): the demo and `--dataset digits` need no scikit-learn.
    Equal to digits_split()'s test half (tested)."""
    resource = resources.files("sit_onnx.evaluate") / "data" / "digits_test.npz"
    with resource.open("rb") as handle, np.load(handle) as data:
        pixels, labels = data["pixels"], data["labels"]
    return (pixels.astype(np.float32) / 16.0 - 0.5)[:, None], labels.astype(np.int64)


def check_data_choice(data: str | os.PathLike | None, dataset: str | None) -> None:
    """What the data flags name: exactly one of them, and a file that is there. The commands check
    it before they load the model (a large one takes seconds to refuse a missing flag otherwise)."""
    if (data is None) == (dataset is None):
        raise SitOnnxError("give exactly one of --data FILE.npz or --dataset digits")
    if data is not None:
        existing_file(data)


def load_labelled(
    data: str | os.PathLike | None,
    dataset: str | None,
    input_name: str,
    require_labels: bool = True,
    whole: dict[str, int | None] | None = None,
    inputs: set[str] | None = None,
) -> LabelledData:
    """Either `--data file.npz` (one array per model input, + `labels`) or `--dataset digits` (its
    test split). Commands that measure no accuracy pass require_labels=False. `whole`: inputs of
    fixed shape by their first dim (None: a scalar input); an array of that many rows (a 0-d one
    for a scalar) is fed whole, not split into rows.
    `inputs`: the model's input names; another array in the file (a column of ids, texts) is never
    fed, so its rows are not checked (it stays, so a misnamed input is listed in the refusal)."""
    check_data_choice(data, dataset)
    if dataset is not None:
        if dataset not in DATASETS:
            raise SitOnnxError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
        x_test, y_test = digits_test()
        return LabelledData({input_name: x_test}, y_test, "digits test split (360 images)")
    arrays = load_arrays(data)
    if inputs is not None and "labels" in inputs:  # a model input of that name (a loss export): fed, not scored
        if require_labels:
            raise SitOnnxError(f"{data}: 'labels' is an input of the model here, not the labels accuracy needs")
        return _checked_rows(data, arrays, None, whole or {}, inputs)
    if "labels" not in arrays and require_labels:
        raise SitOnnxError(f"{data}: has no 'labels' array (has {', '.join(sorted(arrays))})")
    labels = arrays.pop("labels", None)
    if labels is not None and (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer)):
        raise SitOnnxError(f"{data}: 'labels' must be a 1-D integer array, got {labels.dtype} {list(labels.shape)}")
    return _checked_rows(data, arrays, labels, whole or {}, inputs)


def _checked_rows(data, arrays: dict, labels: np.ndarray | None, whole: dict, inputs: set[str] | None) -> LabelledData:
    """The data, once every array the model takes has the rows of the labels (else of the first
    array), or is fed whole."""
    fed = {name: v for name, v in arrays.items() if inputs is None or name in inputs}
    if fed and all(v.ndim == 0 for v in fed.values()):  # scalar inputs, fed whole: nothing to count rows on
        raise SitOnnxError(
            f"{data}: has no rows of data: the arrays the model takes ({', '.join(sorted(fed))}) are single "
            "values (0-d); run --inputs and compare --inputs take them"
        )
    whole_ones = fed_whole(fed, whole)
    per_row = [v for name, v in fed.items() if v.ndim and name not in whole_ones]
    rows = labels.shape[0] if labels is not None else next((v.shape[0] for v in per_row), 0)
    what = "'labels' has" if labels is not None else "the first array has"
    if rows == 0 and (per_row or labels is not None):
        raise SitOnnxError(f"{data}: holds no rows of data ({what} 0)")
    for name, value in fed.items():
        if name in whole_ones:
            continue
        if value.ndim == 0:
            raise SitOnnxError(f"{data}: {name!r} is a single value (0-d), not rows of data")
        if value.shape[0] != rows:
            raise SitOnnxError(f"{data}: {name!r} has {value.shape[0]} rows but {what} {rows}")
    return LabelledData(arrays, labels, str(data))


def fed_whole(arrays: dict[str, np.ndarray], whole: dict[str, int | None]) -> set[str]:
    """The arrays given as one value for every row: an input of fixed shape (by its first dim, as
    `whole` holds it; None for a scalar input) whose array has exactly that many rows (is 0-d)."""
    return {name for name, value in arrays.items() if name in whole and value.shape[:1] == _lead(whole[name])}


def _lead(first: int | None) -> tuple[int, ...]:
    return () if first is None else (first,)


def data_rows(feeds: dict[str, np.ndarray]) -> int:
    """The number of rows of the data: the longest first dim (an input fed whole has fewer)."""
    return max((v.shape[0] for v in feeds.values() if v.ndim), default=0)


def batch_of(feeds: dict[str, np.ndarray], per_row: set[str], start: int, size: int) -> dict[str, np.ndarray]:
    """Rows start .. start+size of every per-row array; the others (fed whole) as they are."""
    return {k: v[start : start + size] if k in per_row else v for k, v in feeds.items()}
