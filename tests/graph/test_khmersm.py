"""A real pretrained Khmer word segmenter (khmersm 1.4.2's wheel: a small transformer exported by
torch's dynamo exporter, three softmax sites, a CRF decoded in numpy). Its export fixed the batch
inside (a Reshape to [1, ...]) while its inputs say `batch`: `compare` must find that it runs one
row at a time. Converted, it must segment text as the original does."""

import random
import sys
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions
from sit_onnx.graph.convert_file import rewrite_file
from tests.evaluate.pretrained import unpacked_wheel

WHEEL = "khmersm-1.4.2-py3-none-any.whl"
# A paragraph of Khmer; its words (as the original segments it) make the sentences segmented below
TEXT = (
    "ព្រះរាជាណាចក្រកម្ពុជាជាប្រទេសមួយនៅអាស៊ីអាគ្នេយ៍ដែលមានរាជធានីភ្នំពេញនិងប្រជាជនប្រមាណជាងដប់ប្រាំពីរលាននាក់"
    "ខ្ញុំចូលចិត្តរៀនភាសាខ្មែរណាស់សាលារៀនរបស់យើងនៅជិតផ្សារ"
)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The wheel's `khmersm` package unpacked: its model (external data beside it) and API."""
    return unpacked_wheel(WHEEL, "khmersm/", tmp_path_factory.mktemp("khmersm"))


@pytest.fixture(scope="module")
def converted(package, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("converted") / "model.sit.onnx"
    report = rewrite_file(package / "khmersm" / "model.onnx", out, RewriteOptions(steps=12))
    return out, report


def test_its_three_softmax_sites_convert(converted):
    path, report = converted
    assert len(report.sites) == 3 and all(s.converted for s in report.sites)
    assert "Softmax" not in report.ops_after
    assert [n.op_type for n in onnx.load(path, load_external_data=False).graph.node].count("SpikingSoftmax") == 3


def test_compare_runs_it_one_row_at_a_time_and_passes(package, converted):
    """Generated at batch 4 it fails (its Reshape holds batch 1); compare falls back to one row."""
    result = CliRunner().invoke(main, ["compare", str(package / "khmersm" / "model.onnx"), str(converted[0])])
    assert result.exit_code == 0, result.output
    assert "generated inputs: x [1, 16] ids 0..122, mask [1, 16] bool" in result.output
    assert "PASSED" in result.output.splitlines()[-1]


def _segmenters(package, converted):
    sys.path.insert(0, str(package))
    try:
        from khmersm import Segmenter
    finally:
        sys.path.remove(str(package))
    return Segmenter(), Segmenter(onnx_path=converted[0])


def _boundaries(segmented: str) -> set[int]:
    """Where the segmenter put a space, as character positions of the unsegmented text."""
    found, position = set(), 0
    for char in segmented:
        if char == " ":
            found.add(position)
        else:
            position += 1
    return found


def test_converted_segmenter_splits_words_as_the_original(package, converted):
    """Measured at K=12 on 300 such sentences: 297 segmented the same, 99.94% of the boundaries
    (K=16: 298, 99.99%)."""
    original, spiking = _segmenters(package, converted)
    words = original.segment(TEXT).split()
    assert len(words) >= 30  # the original finds the words of the paragraph
    rng = random.Random(0)
    sentences = ["".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(120)]
    same = chars = agree = 0
    for text in sentences:
        a, b = original.segment(text), spiking.segment(text)
        same += a == b
        chars += len(text)
        agree += len(text) - len(_boundaries(a) ^ _boundaries(b))
    assert same >= 0.95 * len(sentences) and agree >= 0.995 * chars
