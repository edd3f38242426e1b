"""make_session and rewrite_file called from Python with the wrong kind of argument: a SitOnnxError
naming it, where onnxruntime took `threads=-2`, `use_library="no"` meant "required", and a dict or
an int died in an AttributeError or TypeError deep inside."""

import onnx
import pytest

import sit_onnx
from sit_onnx.errors import SitOnnxError
from tests.helpers import softmax_model

MODEL = softmax_model(["n", 6], -1)


@pytest.mark.parametrize(
    "spec, said",
    [
        ({"threads": -2}, "SessionSpec.threads must be an int >= 0 (0: onnxruntime's choice), got -2"),
        ({"threads": "2"}, "SessionSpec.threads must be an int >= 0 (0: onnxruntime's choice), got '2'"),
        ({"threads": True}, "SessionSpec.threads must be an int >= 0 (0: onnxruntime's choice), got True"),
        ({"use_library": "no"}, "SessionSpec.use_library must be True or False, got 'no'"),
        ({"verify_kernels": 1}, "SessionSpec.verify_kernels must be True or False, got 1"),
        ({"verify_placement": None}, "SessionSpec.verify_placement must be True or False, got None"),
        ({"provider": "gpu"}, "unknown provider 'gpu'; choose from auto, cpu, cuda"),
    ],
)
def test_a_bad_session_spec_field_is_refused_by_name(spec, said):
    with pytest.raises(SitOnnxError) as caught:
        sit_onnx.make_session(MODEL, sit_onnx.SessionSpec(**spec))
    assert str(caught.value) == said


@pytest.mark.parametrize("spec", [{"threads": 0}, {"threads": 1, "use_library": None}, {"use_library": False}])
def test_the_edges_of_a_session_spec_are_taken(spec):
    session = sit_onnx.make_session(MODEL, sit_onnx.SessionSpec(**spec))
    assert [i.name for i in session.get_inputs()] == ["x"]


@pytest.mark.parametrize(
    "model, spec, said",
    [
        (5, sit_onnx.SessionSpec(), "make_session takes a path or an onnx.ModelProto, got int"),
        (
            MODEL.SerializeToString(),
            sit_onnx.SessionSpec(),
            "make_session takes a path or an onnx.ModelProto, got bytes",
        ),
        (MODEL, {"provider": "cpu"}, "spec must be a SessionSpec, got dict"),
    ],
)
def test_make_session_names_a_wrong_argument(model, spec, said):
    with pytest.raises(SitOnnxError) as caught:
        sit_onnx.make_session(model, spec)
    assert str(caught.value) == said


@pytest.mark.parametrize(
    "args, said",
    [
        ((MODEL,), "rewrite_file takes paths, got ModelProto (rewrite_model takes an onnx.ModelProto)"),
        ((None,), "rewrite_file takes paths, got NoneType"),
        (("m.onnx", 5), "rewrite_file takes paths, got int"),
    ],
)
def test_rewrite_file_takes_paths(args, said, tmp_path):
    with pytest.raises(SitOnnxError) as caught:
        sit_onnx.rewrite_file(*args)
    assert str(caught.value) == said


def test_rewrite_file_takes_path_objects_and_no_output(tmp_path):
    source = tmp_path / "m.onnx"
    onnx.save(MODEL, str(source))
    report = sit_onnx.rewrite_file(source)
    assert len(report.converted) == 1 and (tmp_path / "m.sit.onnx").is_file()


def test_rewrite_file_over_an_existing_output_names_the_python_argument_too(tmp_path):
    """The refusal was the CLI's alone ("use --force"); from Python the argument is force=True."""
    source, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(MODEL, str(source))
    out.write_bytes(b"keep me")
    with pytest.raises(SitOnnxError) as caught:
        sit_onnx.rewrite_file(source, out)
    assert str(caught.value) == f"{out} exists (use --force, or force=True from Python, to overwrite it)"
    assert out.read_bytes() == b"keep me"
    sit_onnx.rewrite_file(source, out, force=True)
    assert onnx.load(str(out)).graph.node
