"""export_module's contract: the requested opset, named inputs and outputs with a dynamic batch
axis, constants folded, one Softmax node per torch.softmax, a refusal in one line."""

import onnx
import pytest

torch = pytest.importorskip("torch")

from sit_onnx.errors import SitOnnxError  # noqa: E402
from sit_onnx.export import export_module  # noqa: E402


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x, y):
        scores = self.proj(x) * (self.scale * 0.5)  # a constant sub-expression to fold
        return torch.softmax(scores, dim=-1), y + 1


def _dim(value, axis):
    d = value.type.tensor_type.shape.dim[axis]
    return d.dim_param or d.dim_value


def test_opset_names_dynamic_batch_and_folding(tmp_path):
    model = export_module(TwoHeads(), (torch.randn(2, 4), torch.randn(2, 3)), tmp_path / "m.onnx", opset=14)
    assert model.opset_import[0].version == 14
    assert [i.name for i in model.graph.input] == ["input0", "input1"]
    assert [o.name for o in model.graph.output] == ["output0", "output1"]
    assert all(_dim(v, 0) == "batch" for v in list(model.graph.input) + list(model.graph.output))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Softmax") == 1 and ops.count("Mul") == 1  # scale * 0.5 folded into one constant
    assert not any("scale" in n.input for n in model.graph.node)
    assert onnx.load(str(tmp_path / "m.onnx")) == model


def test_given_names_and_a_fixed_batch(tmp_path):
    model = export_module(
        TwoHeads(), (torch.randn(2, 4), torch.randn(2, 3)), tmp_path / "m.onnx",
        input_names=["a", "b"], output_names=["p", "q"], dynamic_batch=False,
    )  # fmt: skip
    assert [i.name for i in model.graph.input] == ["a", "b"] and [o.name for o in model.graph.output] == ["p", "q"]
    assert _dim(model.graph.input[0], 0) == 2 and model.opset_import[0].version == 17


def test_a_single_tensor_and_a_single_output(tmp_path):
    module = torch.nn.Softmax(dim=-1)
    model = export_module(module, torch.randn(3, 5), tmp_path / "s.onnx")
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["output"]
    assert [n.op_type for n in model.graph.node] == ["Softmax"]


def test_export_failure_is_one_line(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.fft.fft(x).real  # no ONNX export at opset 17 in the TorchScript exporter

    with pytest.raises(SitOnnxError, match=r"^torch\.onnx\.export failed: .*'aten::fft_fft'") as raised:
        export_module(Bad(), torch.randn(2, 4), tmp_path / "bad.onnx")
    assert "\n" not in str(raised.value) and not (tmp_path / "bad.onnx").exists()


def test_inputs_as_a_list_and_refusals_of_what_cannot_be_exported(tmp_path):
    """A list of tensors is taken as the tuple; a non-module, an input that is no tensor, and the
    module's own error on the inputs are one line each (an AttributeError, a TypeError before)."""
    model = export_module(TwoHeads(), [torch.randn(2, 4), torch.randn(2, 3)], tmp_path / "l.onnx")
    assert [i.name for i in model.graph.input] == ["input0", "input1"]
    cases = [
        (("not a module", torch.randn(2, 4)), "export_module takes a torch.nn.Module, got str"),
        ((TwoHeads(), 5), "example_inputs must be a tensor or a tuple of them, got int"),
        (
            (TwoHeads(), torch.randn(2, 4)),
            "the module fails on example_inputs: TypeError: TwoHeads.forward() missing 1 required positional "
            "argument: 'y'",
        ),
    ]
    for (module, inputs), said in cases:
        with pytest.raises(SitOnnxError) as caught:
            export_module(module, inputs, tmp_path / "x.onnx")
        assert str(caught.value).startswith(said) and "\n" not in str(caught.value)
        assert not (tmp_path / "x.onnx").exists()
