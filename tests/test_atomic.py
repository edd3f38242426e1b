"""Atomic writes: the target is either the old one or the whole new one, never a half, and nothing
temporary is left beside it."""

import os
import stat

import pytest

from sit_onnx.atomic import staged_folder, swap_in, umask, write_bytes_atomic, write_text_atomic
from sit_onnx.errors import SitOnnxError


def _folder(path, text):
    path.mkdir()
    (path / "file.txt").write_text(text)
    return path


def test_a_staged_folder_replaces_the_target_even_past_a_stale_one_moved_aside(tmp_path):
    """A run killed between moving the old folder aside and removing it leaves `.name.old`: the
    next --force must not fail on it."""
    target = _folder(tmp_path / "repo", "old")
    _folder(tmp_path / ".repo.old", "stale")
    swap_in(_folder(tmp_path / "staging", "new"), target)
    assert (target / "file.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_a_staged_folder_lands_where_nothing_was(tmp_path):
    with staged_folder(tmp_path / "repo") as staging:
        (staging / "file.txt").write_text("new")
    assert (tmp_path / "repo" / "file.txt").read_text() == "new"
    assert stat.S_IMODE((tmp_path / "repo").stat().st_mode) == 0o777 & ~umask()
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_a_failed_block_leaves_the_old_folder_and_no_staging(tmp_path):
    target = _folder(tmp_path / "repo", "old")
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "file.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "file.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_a_folder_that_cannot_hold_the_staging_is_one_line(tmp_path):
    with pytest.raises(SitOnnxError, match=f"^{tmp_path / 'missing'}: cannot write here \\(No such file"):
        with staged_folder(tmp_path / "missing" / "repo"):
            pass


def test_a_file_is_written_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "out.json"
    write_text_atomic(path, "é\n")
    assert path.read_bytes() == "é\n".encode() and [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask()


def test_a_file_that_cannot_be_put_in_place_leaves_no_temporary(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_text("x")  # a non-empty folder: the rename fails
    with pytest.raises(SitOnnxError, match=f"^{tmp_path / 'taken'}: cannot write \\("):
        write_bytes_atomic(tmp_path / "taken", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    with pytest.raises(SitOnnxError, match=f"^{tmp_path / 'no' / 'f'}: cannot write here \\(No such file"):
        write_bytes_atomic(tmp_path / "no" / "f", b"data")


def test_reading_the_umask_leaves_it_as_it_was():
    before = os.umask(0o027)
    try:
        assert umask() == 0o027 and umask() == 0o027
    finally:
        os.umask(before)
