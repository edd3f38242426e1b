"""A real pretrained classifier from JAX: Google's Magika file-type detector (magika 1.0.3's wheel;
jax2tf then tf2onnx at opset 15). Its softmax is `jax.nn.softmax` written out, with the sum's axis
dropped and put back by a Reshape to a shape read from the input, whose batch dim onnx's inference
names anew after a Slice. Converted, Magika must label real files as the original does."""

import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from sit_onnx.evaluate.inputs import index_bounds
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.graph.sites import DECOMPOSED
from tests.evaluate.pretrained import unpacked_wheel

WHEEL = "magika-1.0.3-py3-none-manylinux_2_28_x86_64.whl"
REPO = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".git", "build", "mutants", "__pycache__", ".ruff_cache", ".pytest_cache"}


@pytest.fixture(scope="module")
def magika_dir(tmp_path_factory):
    """The wheel's `magika` package unpacked (its Python API needs only click, numpy, onnxruntime)."""
    return unpacked_wheel(WHEEL, "magika/", tmp_path_factory.mktemp("magika"))


@pytest.fixture(scope="module")
def converted(magika_dir):
    model = onnx.load(magika_dir / "magika" / "models" / "standard_v3_3" / "model.onnx")
    return rewrite_model(model, RewriteOptions(steps=12))


def test_its_softmax_is_found_and_converted(converted):
    _, report = converted
    assert [(s.pattern, s.axis, s.converted) for s in report.sites] == [(DECOMPOSED, 1, True)]
    assert not {"Exp", "Div"} & set(report.ops_after) and report.ops_after["ReduceSum"] == 4  # LayerNorms'


def test_generated_bytes_cover_its_one_hot(magika_dir):
    """Magika one-hot encodes bytes 0..255 and its padding 256 by an `Equal` to those 257 classes:
    `compare` and `run` generate every one of them (before: ids 0..3)."""
    model = onnx.load(magika_dir / "magika" / "models" / "standard_v3_3" / "model.onnx")
    assert index_bounds(model) == {"bytes": 257}


def _files(limit=300):
    """This repository's own files, of many kinds (Python, C++, CUDA, CMake, JSON, Markdown, ONNX, npz):
    those git tracks where it can tell (caches and files being edited changed the sample)."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False)
    if listed.returncode == 0 and listed.stdout.strip():
        candidates = sorted(REPO / name for name in listed.stdout.splitlines())
    else:  # not a git checkout
        candidates = [p for p in sorted(REPO.rglob("*")) if not SKIP & set(p.relative_to(REPO).parts)]
    found = [path for path in candidates if path.is_file() and not path.is_symlink()]
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def test_converted_magika_labels_files_as_the_original(magika_dir, converted, tmp_path):
    """Measured on 3,000 files of this machine: 2,997 labels kept, the 3 others near a threshold."""
    sys.path.insert(0, str(magika_dir))
    try:
        from magika import Magika
    finally:
        sys.path.remove(str(magika_dir))
    model_dir = tmp_path / "standard_v3_3"
    shutil.copytree(magika_dir / "magika" / "models" / "standard_v3_3", model_dir)
    onnx.save(converted[0], model_dir / "model.onnx")
    files = _files()
    original, spiking = Magika().identify_paths(files), Magika(model_dir=model_dir).identify_paths(files)
    kinds = {r.dl.label for r in original}
    assert len(files) >= 100 and len(kinds) >= 8  # many kinds of content, not one
    same = sum(a.dl.label == b.dl.label for a, b in zip(original, spiking))
    assert same >= 0.98 * len(files)
    scores = [abs(a.score - b.score) for a, b in zip(original, spiking) if a.dl.label == b.dl.label]
    assert max(scores) < 0.05 and sum(scores) / len(scores) < 0.01
