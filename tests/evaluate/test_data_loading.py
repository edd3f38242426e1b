"""Loading data for the evaluation commands: every refusal names the file and the problem; the
bundled digits split's layout; atomic writes that leave nothing behind."""

import builtins
import os
import stat

import numpy as np
import pytest

from sit_onnx.atomic import umask, write_bytes_atomic, write_text_atomic
from sit_onnx.errors import SitOnnxError
from sit_onnx.evaluate.datasets import digits_split, digits_test, load_labelled


def test_exactly_one_source_and_known_data_sets():
    for data, dataset in ((None, None), ("d.npz", "digits")):
        with pytest.raises(SitOnnxError, match=r"^give exactly one of --data FILE\.npz or --dataset digits$"):
            load_labelled(data, dataset, "x")
    with pytest.raises(SitOnnxError, match=r"^unknown data set 'mnist'; known: digits$"):
        load_labelled(None, "mnist", "x")
    bundled = load_labelled(None, "digits", "pixels")
    assert bundled.source == "digits test split (360 images)" and list(bundled.arrays) == ["pixels"]
    x, y = digits_test()
    assert x.dtype == np.float32 and x.shape == (360, 1, 8, 8) and y.dtype == np.int64
    assert x.min() == -0.5 and x.max() == 0.5
    np.testing.assert_array_equal(bundled.labels, y)


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(
        SitOnnxError, match=r"^the digits data set needs scikit-learn: pip install 'sit-onnx\[models\]'$"
    ):
        digits_split()


def test_digits_split_types():
    pytest.importorskip("sklearn")
    x_train, x_test, y_train, y_test = digits_split()
    assert x_train.dtype == x_test.dtype == np.float32 and y_train.dtype == y_test.dtype == np.int64


def test_labels_and_rows_refusals(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, b=np.zeros((4, 2)), a=np.zeros((4, 3)))
    with pytest.raises(SitOnnxError, match=rf"^{path}: has no 'labels' array \(has a, b\)$"):
        load_labelled(path, None, "x")
    assert load_labelled(path, None, "x", require_labels=False).labels is None
    np.savez(path, x=np.zeros((4, 2)), labels=np.zeros((4, 1), np.int64))
    with pytest.raises(SitOnnxError, match=r"'labels' must be a 1-D integer array, got int64 \[4, 1\]$"):
        load_labelled(path, None, "x")
    np.savez(path, x=np.zeros((3, 2)), labels=np.zeros(4, np.int64))
    with pytest.raises(SitOnnxError, match=r"'x' has 3 rows but 'labels' has 4$"):
        load_labelled(path, None, "x")
    np.savez(path, x=np.zeros((3, 2)), s=np.float32(1.0))
    with pytest.raises(SitOnnxError, match=r"'s' is a single value \(0-d\), not rows of data$"):
        load_labelled(path, None, "x", require_labels=False)
    np.savez(path, x=np.zeros((3, 2)), s=np.zeros((0, 2)))
    with pytest.raises(SitOnnxError, match=r"'s' has 0 rows but the first array has 3$"):
        load_labelled(path, None, "x", require_labels=False)
    np.savez(path, x=np.zeros((3, 2)), m=np.zeros((3, 1, 5)))
    unlabelled = load_labelled(path, None, "x", require_labels=False)
    assert unlabelled.source == str(path) and sorted(unlabelled.arrays) == ["m", "x"]


def test_atomic_write_gives_the_usual_mode_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "é\n")
    assert target.read_bytes() == "é\n".encode() and os.listdir(tmp_path) == ["out.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask()
    (tmp_path / "dir").mkdir()
    with pytest.raises(SitOnnxError, match=r"dir: cannot write \(Is a directory\)$"):
        write_bytes_atomic(tmp_path / "dir", b"x")  # the rename onto a folder fails
    assert sorted(os.listdir(tmp_path)) == ["dir", "out.txt"]  # the temporary file is gone
    with pytest.raises(SitOnnxError, match=r"missing/x: cannot write here \(No such file or directory\)$"):
        write_bytes_atomic(tmp_path / "missing" / "x", b"x")


def test_atomic_write_stages_a_hidden_file_beside_the_target_and_cleans_up_on_interrupt(tmp_path, monkeypatch):
    seen = []

    def interrupted(src, dst):
        seen.append((os.path.dirname(src), os.path.basename(src), os.path.exists(src)))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomic(tmp_path / "m.json", b"{}")
    ((folder, name, existed),) = seen
    assert folder == str(tmp_path) and name.startswith(".m.json.") and name.endswith(".tmp") and existed
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()  # the real os.replace again
    monkeypatch.chdir(tmp_path)
    write_bytes_atomic(type(tmp_path)("bare.txt"), b"here")  # a bare name: the current folder
    assert (tmp_path / "bare.txt").read_bytes() == b"here"


def test_arrays_the_model_does_not_take_are_not_row_checked(tmp_path):
    """A file holding the inputs, the labels and a column the model never reads (ids, texts of
    another length): refused before ("'ids' has 5 rows but 'labels' has 3"); it stays in the data,
    so a misnamed input is still listed where the input is missing."""
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), labels=np.zeros(3, np.int64), ids=np.arange(5), note=np.float32(1))
    data = load_labelled(path, None, "x", inputs={"x"})
    assert sorted(data.arrays) == ["ids", "note", "x"] and len(data.labels) == 3
    with pytest.raises(SitOnnxError, match=r"'ids' has 5 rows but 'labels' has 3$"):
        load_labelled(path, None, "x")  # not told the inputs: every array is checked, as before
    np.savez(path, x=np.zeros((3, 2)), labels=np.zeros(4, np.int64), ids=np.arange(4))
    with pytest.raises(SitOnnxError, match=r"'x' has 3 rows but 'labels' has 4$"):
        load_labelled(path, None, "x", inputs={"x"})  # an input still is
    np.savez(path, x=np.zeros((3, 2)), ids=np.arange(5))
    assert load_labelled(path, None, "x", require_labels=False, inputs={"x"}).labels is None  # rows from x
