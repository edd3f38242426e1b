"""`sit-onnx genai`: an onnxruntime-genai folder around a converted decoder. genai itself (a dev
dependency) loads the folder, with the library it ships, and generates what the original folder
generates; bad input is one line and leaves nothing behind."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from sit_onnx.cli import main
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.runtime.library import LIBRARY_NAME
from tests.graph.test_genai_decoder import _decode

DATA = Path(__file__).resolve().parents[1] / "data"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A genai folder as the model builder writes it (the decoder, its config, a tokenizer file)
    and the decoder converted."""
    root = tmp_path_factory.mktemp("genai")
    source = root / "llama"
    source.mkdir()
    shutil.copyfile(DATA / "genai_llama_gqa.onnx", source / "model.onnx")
    shutil.copyfile(DATA / "genai_llama_gqa_config.json", source / "genai_config.json")
    (source / "tokenizer_config.json").write_text('{"note": "copied as it is"}')
    converted, _ = rewrite_model(onnx.load(DATA / "genai_llama_gqa.onnx"), RewriteOptions())
    onnx.save(converted, root / "model.sit.onnx")
    return source, root / "model.sit.onnx", root


def test_the_folder_holds_the_converted_decoder_the_library_and_the_rest(folders):
    source, model, root = folders
    out = root / "out"
    result = invoke("genai", model, source, out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "model": str(model), "source": str(source), "folder": str(out), "component": "decoder", "library": True,
    }  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["genai_config.json", "model.onnx", "tokenizer_config.json", LIBRARY_NAME]
    )
    assert (out / "tokenizer_config.json").read_text() == '{"note": "copied as it is"}'
    config = json.loads((out / "genai_config.json").read_text())
    original = json.loads((source / "genai_config.json").read_text())
    assert config["model"]["decoder"]["session_options"].pop("custom_ops_library") == LIBRARY_NAME
    assert config == original  # nothing else changed
    assert any(n.domain == "ai.sit" for n in onnx.load(out / "model.onnx").graph.node)


def test_no_library_ships_none_and_names_none(folders):
    source, model, root = folders
    out = root / "bare"
    assert invoke("genai", model, source, out, "--no-library").exit_code == 0
    assert not (out / LIBRARY_NAME).exists()
    assert "custom_ops_library" not in (out / "genai_config.json").read_text()


def test_a_model_without_spiking_ops_ships_no_library(folders):
    source, _, root = folders
    out = root / "plain"
    result = invoke("genai", source / "model.onnx", source, out)
    assert result.exit_code == 0, result.output
    assert "custom-op library" not in result.output and not (out / LIBRARY_NAME).exists()


def _generate(folder, prompts, new_tokens=16):
    og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai generates with the folder")
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompts[0]) + new_tokens, do_sample=False, batch_size=len(prompts))
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(prompts, dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    return [[int(t) for t in generator.get_sequence(i)] for i in range(len(prompts))]


def test_genai_generates_with_the_folder_what_the_converted_decoder_gives(folders):
    """genai's own loop (its shared KV buffers, the library registered from the folder, or the
    function bodies alone): 16 greedy tokens for two prompts in one batch, the tokens that decoding
    the converted model in onnxruntime gives (tests/graph/test_genai_decoder.py's loop, a row at a
    time). The original folder's tokens agree up to the first near-tie of the original's choices:
    the first 2 of the second prompt (its third is ahead by 0.03), the first 4 of the first."""
    source, model, root = folders
    prompts = [[5, 17, 99, 25, 3, 8, 41, 77], [9, 30, 12, 44, 45, 46, 47, 100]]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = [prompt + _decode(session, prompt, 16)[0] for prompt in prompts]
    for flags, name in (((), "with_library"), (("--no-library",), "functions")):
        assert invoke("genai", model, source, root / name, "--force", *flags).exit_code == 0
        assert _generate(root / name, prompts) == want
    original = _generate(source, prompts)
    assert original[0][:12] == want[0][:12] and original[1][:10] == want[1][:10]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda s: (s / "genai_config.json").unlink(),
         "no genai_config.json here (not an onnxruntime-genai model folder)"),
        (lambda s: (s / "genai_config.json").write_text("{nope"), "genai_config.json: not a JSON file"),
        (lambda s: (s / "genai_config.json").write_text('{"model": {"encoder": {"filename": "e.onnx"}, '
                                                        '"vision": {"filename": "v.onnx"}}}'),
         "no model.decoder.filename (components with a model file: encoder, vision)"),
        (lambda s: (s / "genai_config.json").write_text('{"model": {"decoder": {"filename": "../x.onnx"}}}'),
         "model.decoder.filename '../x.onnx' is not a plain file name"),
        (lambda s: (s / "genai_config.json").write_text("[1]"),
         "no model.decoder.filename (components with a model file: none)"),
        (lambda s: (s / "genai_config.json").write_text('{"model": [1]}'),
         "no model.decoder.filename (components with a model file: none)"),
        (lambda s: (s / "genai_config.json").write_text('{"model": {"decoder": {"filename": 7}}}'),
         "no model.decoder.filename (components with a model file: none)"),
    ],
)  # fmt: skip
def test_a_folder_genai_cannot_read_is_one_line(folders, tmp_path, setup, message):
    source, model, _ = folders
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    setup(broken)
    result = invoke("genai", model, broken, tmp_path / "out")
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["broken"]


def test_output_errors_are_one_line_and_write_nothing(folders, tmp_path):
    source, model, _ = folders
    taken = tmp_path / "taken"
    taken.mkdir()
    cases = [
        ((model, source, source), "the output folder must not be the source folder"),
        ((model, source, source / "inside"), "the output folder must not be the source folder or inside it"),
        ((model, source, taken), "exists (use --force, or force=True from Python, to replace it)"),
        ((model, source, tmp_path / "no" / "out"), "no such folder"),
        ((model, tmp_path / "missing", tmp_path / "out"), "missing: no such folder"),
        ((tmp_path / "absent.onnx", source, tmp_path / "out"), "absent.onnx"),
        ((model, source, tmp_path / "out", "--component", "vision"), "no model.vision.filename"),
    ]
    for args, message in cases:
        result = invoke("genai", *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and not any(taken.iterdir())
    assert sorted(p.name for p in source.iterdir()) == ["genai_config.json", "model.onnx", "tokenizer_config.json"]


def test_a_converted_model_the_kernels_would_refuse_is_not_shipped(folders, tmp_path):
    """genai would fail to load it, with the library or on the function bodies: named here, in one
    line, and no folder written."""
    source, model, _ = folders
    bad = onnx.load(str(model))
    node = next(n for n in bad.graph.node if n.op_type == "SpikingSoftmax")
    next(a for a in node.attribute if a.name == "time_steps").i = -1
    path = tmp_path / "bad.onnx"
    onnx.save(bad, str(path))
    result = invoke("genai", path, source, tmp_path / "out")
    assert result.exit_code == 1 and not (tmp_path / "out").exists()
    assert result.stderr.strip() == f"Error: {path}: SpikingSoftmax node '{node.name}': time_steps must be >= 0, got -1"


def test_the_source_decoders_external_data_is_not_carried_over(folders, tmp_path):
    """A decoder whose weights sit in model.onnx.data (as genai's builder writes it), replaced by a
    converted model in one file: the old data file is not copied; a config without session options
    gets them."""
    _, model, _ = folders
    source = tmp_path / "external"
    source.mkdir()
    onnx.save(onnx.load(DATA / "genai_llama_gqa.onnx"), source / "model.onnx", save_as_external_data=True,
              location="model.onnx.data")  # fmt: skip
    (source / "genai_config.json").write_text('{"model": {"decoder": {"filename": "model.onnx"}}}')
    (source / "model.onnx.data.md").write_text("a file named like the data, kept")
    assert invoke("genai", model, source, tmp_path / "out").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["genai_config.json", "model.onnx", "model.onnx.data.md", LIBRARY_NAME]
    )
    config = json.loads((tmp_path / "out" / "genai_config.json").read_text())
    assert config == {
        "model": {"decoder": {"filename": "model.onnx", "session_options": {"custom_ops_library": LIBRARY_NAME}}}
    }
    assert (source / "model.onnx.data").is_file()  # the source is left as it was


def test_a_component_file_name_that_is_hidden_is_refused(folders, tmp_path):
    _, model, _ = folders
    source = tmp_path / "hidden"
    source.mkdir()
    (source / "genai_config.json").write_text('{"model": {"decoder": {"filename": ".model.onnx"}}}')
    result = invoke("genai", model, source, tmp_path / "out")
    assert result.exit_code == 1 and "model.decoder.filename '.model.onnx' is not a plain file name" in result.output


def test_a_converted_model_with_external_weights_keeps_them(folders, tmp_path):
    """A converted decoder saved with its weights in a .data file lands in the folder the same way."""
    source, model, _ = folders
    external = tmp_path / "model.sit.onnx"
    onnx.save(onnx.load(model), external, save_as_external_data=True, location="model.sit.onnx.data")
    assert invoke("genai", external, source, tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "model.onnx.data").is_file()
    loaded = onnx.load(tmp_path / "out" / "model.onnx", load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in loaded.graph.initializer)
