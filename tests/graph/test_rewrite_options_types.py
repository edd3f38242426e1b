"""The Python API's RewriteOptions take what the CLI's parsers would have checked: a wrong type or
range is a SitOnnxError naming the field, never a silent no-op (`first=-1` converted no site) or a
misreading (`activations="gelu"` was read letter by letter: "unknown activation 'g'")."""

import json

import numpy as np
import onnx
import pytest

import sit_onnx
from sit_onnx.errors import SitOnnxError
from tests.helpers import softmax_model

MODEL = softmax_model(["n", 6], -1)


@pytest.mark.parametrize(
    "options, said",
    [
        ({"steps": 0}, "RewriteOptions.steps must be an int >= 1, got 0"),
        ({"steps": "12"}, "RewriteOptions.steps must be an int >= 1, got '12'"),
        ({"steps": 12.0}, "RewriteOptions.steps must be an int >= 1, got 12.0"),
        ({"steps": True}, "RewriteOptions.steps must be an int >= 1, got True"),
        ({"time_steps": -1}, "RewriteOptions.time_steps must be an int >= 0, got -1"),
        ({"time_steps": None}, "RewriteOptions.time_steps must be an int >= 0, got None"),
        (
            {"time_steps": 2**63},
            f"RewriteOptions.time_steps must be at most {2**63 - 1} (an ONNX int attribute), got {2**63}",
        ),
        ({"first": -1}, "RewriteOptions.first must be an int >= 0, got -1"),
        ({"activation_steps": 0}, "RewriteOptions.activation_steps must be an int >= 1, got 0"),
        ({"shift": "yes"}, "RewriteOptions.shift must be True or False, got 'yes'"),
        ({"sigmoid": 1}, "RewriteOptions.sigmoid must be True or False, got 1"),
        ({"inline": None}, "RewriteOptions.inline must be True or False, got None"),
        ({"strict": "no"}, "RewriteOptions.strict must be True or False, got 'no'"),
        ({"attention_only": 0}, "RewriteOptions.attention_only must be True or False, got 0"),
        ({"fuse": "on"}, "RewriteOptions.fuse must be True or False, got 'on'"),
        ({"activations": "gelu"}, "RewriteOptions.activations must be a tuple of strings, got 'gelu'"),
        ({"nodes": "sm"}, "RewriteOptions.nodes must be a tuple of strings, got 'sm'"),
        ({"nodes": (1,)}, "RewriteOptions.nodes must be a tuple of strings, got (1,)"),
        ({"activation_params": "g.json"}, "RewriteOptions.activation_params must be a tuple of paths, got 'g.json'"),
        ({"activation_params": (3,)}, "RewriteOptions.activation_params must be a tuple of paths, got (3,)"),
        ({"params_file": 123}, "RewriteOptions.params_file must be a path or None, got 123"),  # was a TypeError
    ],
)
def test_a_wrong_type_or_range_is_refused_naming_the_field(options, said):
    with pytest.raises(SitOnnxError) as caught:
        sit_onnx.rewrite_model(MODEL, sit_onnx.RewriteOptions(**options))
    assert str(caught.value) == said


@pytest.mark.parametrize(
    "options, converted",
    [
        ({"steps": np.int64(8)}, 1),
        ({"first": 0}, 0),
        ({"first": 1}, 1),
        ({"fuse": None}, 1),
        ({"fuse": np.bool_(True)}, 1),
        ({"nodes": ["sm"]}, 1),
        ({"activations": ["gelu"]}, 1),
        ({"time_steps": 0, "activation_steps": None}, 1),
        ({"time_steps": 2**63 - 1}, 1),  # the largest an int64 attribute holds
    ],
)
def test_the_edges_of_each_range_and_lists_are_taken(options, converted):
    _, report = sit_onnx.rewrite_model(MODEL, sit_onnx.RewriteOptions(**options))
    assert len(report.converted) == converted


@pytest.mark.parametrize(
    "model, said",
    [
        ("model.onnx", "rewrite_model takes an onnx.ModelProto, got str (rewrite_file reads and writes files)"),
        (None, "rewrite_model takes an onnx.ModelProto, got NoneType"),
        (MODEL.graph, "rewrite_model takes an onnx.ModelProto, got GraphProto"),
    ],
)
def test_rewrite_model_takes_a_model_proto(model, said):
    with pytest.raises(SitOnnxError) as caught:
        sit_onnx.rewrite_model(model)
    assert str(caught.value) == said


def test_options_must_be_rewrite_options():
    with pytest.raises(SitOnnxError, match=r"^options must be a RewriteOptions, got dict$"):
        sit_onnx.rewrite_model(MODEL, {"steps": 8})
    assert isinstance(sit_onnx.rewrite_model(MODEL)[0], onnx.ModelProto)


def test_softmax_sets_without_the_shift_are_refused_saying_why():
    """No softmax set is shipped on [-1, 1]: the lookup's "shipped there: none" did not say why."""
    from sit_onnx.graph.convert import RewriteOptions

    with pytest.raises(SitOnnxError, match=r"^--objective softmax sets are fitted to rows of max-shifted logits"):
        RewriteOptions(shift=False, objective="softmax").neuron_params()
    assert RewriteOptions(shift=False, objective="exp-rmse").neuron_params().input_range == (-1.0, 1.0)


def test_parameter_files_may_be_paths(tmp_path):
    """pathlib paths are what Python callers hold: the file options take them as the CLI's strings."""
    from pathlib import Path

    from sit_onnx.neurons.activation import shipped_activation
    from sit_onnx.neurons.params import shipped_params

    params, gelu = tmp_path / "k8.json", tmp_path / "gelu.json"
    shipped_params(8, (-12, 0)).save(params)
    shipped_activation("gelu", 8).save(gelu)
    options = sit_onnx.RewriteOptions(params_file=Path(params), activations=("gelu",), activation_params=(Path(gelu),))
    _, report = sit_onnx.rewrite_model(MODEL, options)
    assert report.params == str(params) and len(report.activations) == 0  # MODEL holds no GELU
    assert json.loads(json.dumps(report.to_dict()))["options"]["activation_params"] == [str(gelu)]  # was a Path
