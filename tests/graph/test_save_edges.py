"""Which files a save writes, and which tensors go to the external data file (from 1 KiB up)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sit_onnx.graph.save as save
from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.save import EXTERNAL_MIN_BYTES, files_written, save_model


def _model(*sizes):
    """Add(x, w_i) for weights of the given byte sizes (float32)."""
    names = [f"w{i}" for i in range(len(sizes))]
    inits = [
        numpy_helper.from_array(np.full(s // 4, i + 1, np.float32), n) for i, (s, n) in enumerate(zip(sizes, names))
    ]
    nodes = [helper.make_node("ReduceSum", [n], [f"s{i}"], keepdims=0) for i, n in enumerate(names)]
    outputs = [helper.make_tensor_value_info(f"s{i}", TensorProto.FLOAT, []) for i in range(len(names))]
    graph = helper.make_graph(nodes, "g", [], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def test_small_models_write_one_file_unless_asked(tmp_path):
    model = _model(EXTERNAL_MIN_BYTES)
    assert files_written(model, tmp_path / "m.onnx") == [tmp_path / "m.onnx"]
    assert files_written(model, tmp_path / "m.onnx", True) == [tmp_path / "m.onnx", tmp_path / "m.onnx.data"]


def test_asked_for_external_data_with_no_tensor_to_move_writes_one_file(tmp_path):
    """Every tensor under 1 KiB (a model saved with size_threshold=0 holds such): nothing goes out, so
    no data file is named or written (the save used to name one it never wrote, and failed)."""
    model = _model(EXTERNAL_MIN_BYTES - 4, 64)
    assert files_written(model, tmp_path / "m.onnx", True) == [tmp_path / "m.onnx"]
    save_model(model, tmp_path / "m.onnx", external=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    back = onnx.load(str(tmp_path / "m.onnx"))
    assert [numpy_helper.to_array(t).sum() for t in back.graph.initializer] == [255.0, 32.0]


def test_tensors_from_one_kib_go_to_the_data_file(tmp_path):
    path = tmp_path / "m.onnx"
    save_model(_model(EXTERNAL_MIN_BYTES - 4, EXTERNAL_MIN_BYTES), path, external=True)
    stored = {t.name: t.data_location for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    assert stored == {"w0": TensorProto.DEFAULT, "w1": TensorProto.EXTERNAL}
    assert (tmp_path / "m.onnx.data").stat().st_size == EXTERNAL_MIN_BYTES
    back = onnx.load(str(path))
    assert [numpy_helper.to_array(t).sum() for t in back.graph.initializer] == [255.0, 512.0]


def test_models_near_the_protobuf_limit_go_external(monkeypatch):
    import sit_onnx.graph.save as save

    model = _model(EXTERNAL_MIN_BYTES)
    margin = save.PROTOBUF_LIMIT - 2**26  # 64 MiB of room for the graph itself
    monkeypatch.setattr(save, "weights_bytes", lambda m: margin)
    assert not save.needs_external_data(model)
    monkeypatch.setattr(save, "weights_bytes", lambda m: margin + 1)
    assert save.needs_external_data(model)
    monkeypatch.setattr(save, "weights_bytes", lambda m: 0)
    monkeypatch.setattr(save, "uses_external_data", lambda m: True)  # a model that came with a data file
    assert save.needs_external_data(model) and save.needs_external_data(model, external=False)


def test_the_model_is_staged_hidden_beside_its_output(tmp_path, monkeypatch):
    """The write happens in a hidden folder in the output's own folder (os.replace is atomic only
    within one filesystem), named after the output, and gone afterwards."""
    seen = []
    real = onnx.save_model

    def spy(model, target, *args, **kwargs):
        seen.append(sorted(p.name for p in (tmp_path / "out").iterdir()))
        return real(model, target, *args, **kwargs)

    monkeypatch.setattr(save.onnx, "save_model", spy)
    (tmp_path / "out").mkdir()
    save_model(_model(16), tmp_path / "out" / "m.onnx")
    ((staging,),) = seen
    assert staging.startswith(".m.onnx.")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.onnx"]


def test_a_failed_write_says_the_systems_reason_and_leaves_nothing(tmp_path, monkeypatch):
    for error, said in [(OSError(28, "No space left on device"), "No space left on device"), (OSError("bad"), "bad")]:

        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(save.onnx, "save_model", fail)
        with pytest.raises(SitOnnxError) as refused:
            save_model(_model(16), tmp_path / "m.onnx")
        assert str(refused.value) == f"{tmp_path / 'm.onnx'}: cannot write ({said})"
        assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(save.onnx, "save_model", lambda *a, **k: (_ for _ in ()).throw(ValueError("too big")))
    with pytest.raises(SitOnnxError) as refused:
        save_model(_model(16), tmp_path / "m.onnx")
    assert str(refused.value) == f"{tmp_path / 'm.onnx'}: cannot write the model (too big)"


def test_a_save_by_default_keeps_even_large_tensors_inside_one_file(tmp_path):
    save_model(_model(4 * EXTERNAL_MIN_BYTES), tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert onnx.load(tmp_path / "m.onnx").graph.initializer[0].HasField("raw_data")


def test_a_folder_that_does_not_exist_is_named_with_the_systems_reason(tmp_path):
    with pytest.raises(SitOnnxError) as refused:
        save_model(_model(16), tmp_path / "missing" / "m.onnx")
    assert str(refused.value) == f"{tmp_path / 'missing'}: cannot write here (No such file or directory)"
