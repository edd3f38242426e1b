"""The session factory: providers, the library, and catching a silent function fallback."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.functions import spiking_functions
from sit_onnx.runtime import SessionSpec, make_session
from tests.helpers import softmax_model


def _spiking_model(elem_type):
    node = helper.make_node("SpikingExp", ["x"], ["y"], domain="ai.sit", thresholds=[0.0], resets=[1.0], weights=[2.0])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", elem_type, [3])],
        [helper.make_tensor_value_info("y", elem_type, [3])],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)],
        functions=spiking_functions(1, 17),
    )


def test_kernels_used_when_library_registered():
    session = make_session(_spiking_model(TensorProto.FLOAT), SessionSpec(provider="cpu", use_library=True))
    np.testing.assert_array_equal(session.run(None, {"x": np.array([-1, 0, 1], np.float32)})[0], [0, 2, 2])


def test_kernel_types_are_enforced_with_library():
    # the kernels take float32/float16 (the rewrite casts other types); a double site is refused in one line
    with pytest.raises(SitOnnxError, match="cannot load the model.*tensor\\(double\\)"):
        make_session(_spiking_model(TensorProto.DOUBLE), SessionSpec(provider="cpu", use_library=True))


def test_kernel_probe_refuses_a_library_that_leaves_ops_to_function_bodies(monkeypatch):
    """The probe reads the graph onnxruntime placed: inlined function bodies leave fewer ai.sit nodes."""
    from sit_onnx.runtime import session as session_module

    real = session_module.spiking_node_count
    calls = iter([-1, 0])  # the placed graph is counted first: one op short; then the probe itself
    monkeypatch.setattr(session_module, "spiking_node_count", lambda model: real(model) + next(calls))
    session_module._kernels_take_the_probe.cache_clear()
    try:
        with pytest.raises(SitOnnxError, match="only 7 of 8 spiking op kinds run on the sit-onnx kernels"):
            make_session(_spiking_model(TensorProto.FLOAT), SessionSpec(provider="cpu", use_library=True))
    finally:
        session_module._kernels_take_the_probe.cache_clear()


def test_probe_places_every_op_and_type_on_the_kernels():
    from sit_onnx.runtime.session import _kernels_take_the_probe, get_library_path

    expected, placed = _kernels_take_the_probe(get_library_path(), ("CPUExecutionProvider",))
    assert expected == placed == 8


def test_placement_check_of_the_model_itself(monkeypatch):
    from sit_onnx.runtime import session as session_module

    spec = SessionSpec(provider="cpu", use_library=True, verify_placement=True)
    make_session(_spiking_model(TensorProto.FLOAT), spec)  # placed: passes
    counts = iter([0, 1])  # placed graph first, then the model: pretend the one op was inlined
    monkeypatch.setattr(session_module, "spiking_node_count", lambda model: next(counts))
    monkeypatch.setattr(session_module, "check_kernels", lambda providers: None)
    with pytest.raises(SitOnnxError) as refused:
        make_session(_spiking_model(TensorProto.FLOAT), spec)
    assert str(refused.value) == (
        "model: only 0 of 1 spiking ops run on the sit-onnx kernels; the rest fell back to their "
        "function bodies (is the library built for this onnxruntime?)"
    )


def test_kernel_check_names_how_many_op_kinds_the_kernels_take(monkeypatch):
    """The probe's count of spiking op kinds, 8 (four ops, float32 and float16), against those
    still there once onnxruntime placed it; the probe runs with the library the session will use."""
    from sit_onnx.runtime import session as session_module

    seen = []

    def probe(library, providers):
        seen.append((library, providers))
        return 8, 6

    monkeypatch.setattr(session_module, "_kernels_take_the_probe", probe)
    with pytest.raises(SitOnnxError) as refused:
        session_module.check_kernels(["CPUExecutionProvider"])
    assert str(refused.value) == (
        "only 6 of 8 spiking op kinds run on the sit-onnx kernels; the rest would fall back to their "
        "function bodies (is the library built for this onnxruntime?)"
    )
    assert seen == [(session_module.get_library_path(), ("CPUExecutionProvider",))]


def test_not_onnx_file_names_the_file(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("hello")
    with pytest.raises(SitOnnxError, match=f"{bad}: not an ONNX model"):
        make_session(bad, SessionSpec(provider="cpu"))


def test_foreign_library_is_one_line(tmp_path, monkeypatch):
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"\x7fELF not really")
    monkeypatch.setenv("SIT_ONNX_OPS_LIBRARY", str(fake))
    with pytest.raises(SitOnnxError, match=r"libfake.so: not a usable sit-onnx library \(.*\S.*\)$") as caught:
        make_session(softmax_model([2, 3], -1), SessionSpec(provider="cpu", use_library=True))
    assert "(None)" not in str(caught.value)


def test_old_onnxruntime_is_refused_in_words(monkeypatch):
    from sit_onnx.runtime import session as session_module

    monkeypatch.setattr(session_module.ort, "__version__", "1.20.1")
    with pytest.raises(SitOnnxError, match="onnxruntime 1.20.1 is too old.*--no-library"):
        make_session(softmax_model([2, 3], -1), SessionSpec(provider="cpu", use_library=True, verify_kernels=False))


def test_function_fallback_runs_without_library():
    session = make_session(_spiking_model(TensorProto.DOUBLE), SessionSpec(provider="cpu", use_library=False))
    np.testing.assert_array_equal(session.run(None, {"x": np.array([-1, 0, 1], np.float64)})[0], [0, 2, 2])


def test_missing_provider_is_one_line_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing is missing")
    with pytest.raises(SitOnnxError, match="provider cuda is not available"):
        make_session(softmax_model([2, 3], -1), SessionSpec(provider="cuda"))


def test_unknown_provider():
    with pytest.raises(SitOnnxError, match="unknown provider"):
        make_session(softmax_model([2, 3], -1), SessionSpec(provider="tpu"))


def _norm_fallback(w, time_steps):
    node = helper.make_node("SpikingNorm", ["x"], ["y"], domain="ai.sit", axis=-1, time_steps=time_steps)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(w.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(w.shape))],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=spiking_functions(1, 17))
    return make_session(model, SessionSpec(provider="cpu", use_library=False)).run(None, {"x": w})[0]


@pytest.mark.parametrize("time_steps", [0, 8])
def test_function_fallback_edge_rows(time_steps):
    """V_th <= 0 spikes nowhere (0, not NaN or a negative rate); a NaN threshold gives a NaN row;
    with N spikes a negative weight clips at 0 spikes."""
    w = np.array([[0, 0, 0, 0], [1, -1, 0, 0], [-1, -2, 0, 0], [np.nan, 1, 1, 1], [3, -1, 1, 1]], np.float32)
    got = _norm_fallback(w, time_steps)
    np.testing.assert_array_equal(got[:3], 0)
    assert np.all(np.isnan(got[3]))
    if time_steps:
        np.testing.assert_array_equal(got[4], [6 / 8, 0, 2 / 8, 2 / 8])  # floor(8*w/4)/8, -1 clipped to 0
    else:
        np.testing.assert_allclose(got[4], [0.75, -0.25, 0.25, 0.25])  # the closed form w/V_th


@pytest.mark.parametrize(
    "attrs, named",
    [
        ({"thresholds": [0.0, 1.0], "resets": [1.0], "weights": [1.0, 1.0]}, "must have equal lengths"),
        ({"thresholds": [float("nan"), 0.0], "resets": [1.0, 1.0], "weights": [1.0, 1.0]}, "step 0 holds a NaN"),
        ({"thresholds": [0.0, 0.0], "resets": [1.0, float("inf")], "weights": [1.0, 1.0]}, "step 1 holds a NaN"),
        # K=3 is the contract's, but the model's body unrolls K=2: only the body can refuse it
        ({"thresholds": [0.0] * 3, "resets": [1.0] * 3, "weights": [1.0] * 3}, "Reshape|Split"),
    ],
    ids=["lengths", "nan", "inf", "other_k"],
)
def test_function_fallback_refuses_what_the_kernels_refuse(attrs, named):
    node = helper.make_node("SpikingExp", ["x"], ["y"], domain="ai.sit", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=spiking_functions(2, 17))
    with pytest.raises(Exception, match="Reshape|Split"):  # the body itself, at session creation or at run
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": np.zeros(3, np.float32)}
        )
    with pytest.raises(Exception, match=named):  # make_session names it first, as the kernels would
        session = make_session(model, SessionSpec(provider="cpu", use_library=False))
        session.run(None, {"x": np.zeros(3, np.float32)})


def test_probe_model_holds_every_op_in_both_types_and_runs_anywhere():
    """The kernel probe itself: eight named nodes (four ops x float32, float16), valid, and the same
    numbers with and without the library (its function bodies stand in)."""
    import onnx

    from sit_onnx.runtime.session import probe_model

    model = probe_model()
    onnx.checker.check_model(model, full_check=True)
    kinds = {(n.op_type, n.input[0]) for n in model.graph.node}
    assert kinds == {
        (op, f"x_{t}")
        for op in ("SpikingExp", "SpikingNorm", "SpikingSoftmax", "SpikingActivation")
        for t in ("f32", "f16")
    }
    assert all(n.domain == "ai.sit" and n.name for n in model.graph.node)
    x = np.array([[-1.0, 0.0, 2.0], [0.5, -0.5, 0.0]], np.float32)
    feeds = {"x_f32": x, "x_f16": x.astype(np.float16)}
    with_kernels = make_session(model, SessionSpec(provider="cpu", use_library=True)).run(None, feeds)
    fallback = make_session(model, SessionSpec(provider="cpu", use_library=False)).run(None, feeds)
    names = [o.name for o in model.graph.output]
    for name, a, b in zip(names, with_kernels, fallback):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=1e-3, err_msg=name)
    exp_f32 = dict(zip(names, with_kernels))["SpikingExp_f32"]
    np.testing.assert_array_equal(exp_f32, (x >= 0).astype(np.float32))  # T=0, d=1: fires at and above 0
    act_f32 = dict(zip(names, with_kernels))["SpikingActivation_f32"]
    np.testing.assert_array_equal(act_f32, np.where(x > 1, x, (x >= 0).astype(np.float32)))  # identity above 1


def test_placement_check_reads_a_model_file(tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(_spiking_model(TensorProto.FLOAT), str(path))
    session = make_session(path, SessionSpec(provider="cpu", use_library=True, verify_placement=True))
    np.testing.assert_array_equal(session.run(None, {"x": np.array([-1, 0, 1], np.float32)})[0], [0, 2, 2])


def test_threads_reach_the_session_and_providers_resolve_in_order():
    import onnxruntime as ort

    from sit_onnx.runtime.session import resolve_providers

    session = make_session(softmax_model([2, 3], -1), SessionSpec(provider="cpu", threads=1))
    assert session.get_session_options().intra_op_num_threads == 1 and session.get_providers() == [
        "CPUExecutionProvider"
    ]
    default = make_session(softmax_model([2, 3], -1), SessionSpec(provider="cpu"))
    assert default.get_session_options().intra_op_num_threads == 0  # onnxruntime's own choice
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    expected = ["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda else ["CPUExecutionProvider"]
    assert resolve_providers("auto") == expected


def test_runtime_path_names_what_runs_the_ops():
    from sit_onnx.runtime.library import get_library_path
    from sit_onnx.runtime.session import runtime_path

    assert runtime_path(SessionSpec(use_library=True)) == f"sit-onnx kernels ({get_library_path()})"
    assert runtime_path(SessionSpec(use_library=False)).startswith("function fallback (standard onnxruntime ops")
    assert SessionSpec(use_library=False).library_used() is False and SessionSpec().library_used() is True


def test_run_time_refusals_are_one_line_naming_the_model():
    from sit_onnx.runtime.session import run_by_name, run_session

    session = make_session(softmax_model([2, 3], -1), SessionSpec(provider="cpu"))
    with pytest.raises(SitOnnxError, match=r"^m\.onnx: onnxruntime failed to run the model: .*") as caught:
        run_session(session, {"x": np.zeros((4, 4), np.float32)}, "m.onnx")
    assert "\n" not in str(caught.value)
    with pytest.raises(SitOnnxError, match=r"^model: onnxruntime failed to run the model: .*invalid dimensions"):
        run_session(session, {"x": np.zeros((4, 4), np.float32)})
    with pytest.raises(SitOnnxError, match=r"^v\.onnx: onnxruntime failed"):
        run_by_name(session, {"x": np.zeros((4, 4), np.float32)}, "v.onnx")
    with pytest.raises(SitOnnxError, match=r"^model: onnxruntime failed"):
        run_by_name(session, {"x": np.zeros((4, 4), np.float32)})
    assert list(run_by_name(session, {"x": np.zeros((2, 3), np.float32)})) == ["y"]
    np.testing.assert_allclose(run_session(session, {"x": np.zeros((2, 3), np.float32)})[0], np.full((2, 3), 1 / 3))


def test_a_missing_or_folder_model_is_named(tmp_path):
    with pytest.raises(SitOnnxError, match=f"^{tmp_path / 'gone.onnx'}: no such file$"):
        make_session(tmp_path / "gone.onnx", SessionSpec(provider="cpu"))
    with pytest.raises(SitOnnxError, match=f"^{tmp_path}: not a file$"):
        make_session(tmp_path, SessionSpec(provider="cpu"))


def test_without_the_library_no_kernel_check_runs(monkeypatch):
    """--no-library runs the function bodies: there are no kernels to check or place."""
    from sit_onnx.runtime import session as session_module

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel check ran without the library")

    monkeypatch.setattr(session_module, "check_kernels", refuse)
    monkeypatch.setattr(session_module, "_placed_spiking_nodes", refuse)
    spec = SessionSpec(provider="cpu", use_library=False, verify_kernels=True, verify_placement=True)
    assert make_session(softmax_model([2, 3], -1), spec).get_outputs()[0].name == "y"


@pytest.mark.parametrize("steps", [1, 4])
def test_the_function_body_skips_the_last_reset_no_one_reads(steps):
    """K thresholds and weights are gathered, K - 1 resets: the membrane after the last step is dead."""
    from sit_onnx.graph.functions import spiking_exp_function

    body = spiking_exp_function(steps, 17).node
    assert sum(n.op_type == "GreaterOrEqual" for n in body) == steps
    assert sum(n.op_type == "Sub" for n in body) == steps - 1


@pytest.mark.parametrize("library", [False, True])
def test_spiking_nodes_without_axis_or_flags_take_the_documented_defaults(library):
    """A hand-written graph may leave out SpikingNorm's and SpikingSoftmax's optional attributes:
    the last axis, the closed form, max-shift on, no Sigmoid, in the kernels and the bodies alike."""
    from sit_onnx.neurons import NeuronParams, SoftmaxOptions, si_norm, spiking_softmax

    neuron = {"thresholds": [-1.0, -2.0], "resets": [1.0, 1.0], "weights": [0.5, 0.25]}
    nodes = [
        helper.make_node("Neg", ["x"], ["w"]),  # positive weights for SI-norm
        helper.make_node("SpikingNorm", ["w"], ["n"], domain="ai.sit"),
        helper.make_node("SpikingSoftmax", ["x"], ["s"], domain="ai.sit", **neuron),
    ]
    shape = [2, 3, 4]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("n", "s")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.sit", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=spiking_functions(2, 17))
    x = np.random.default_rng(3).uniform(-4, -0.5, shape).astype(np.float32)  # every row's max below 0
    norm, soft = make_session(model, SessionSpec(provider="cpu", use_library=library)).run(None, {"x": x})
    np.testing.assert_allclose(norm, si_norm(-x, axis=-1), rtol=1e-6)
    params = NeuronParams(neuron["thresholds"], neuron["resets"], neuron["weights"], (-12, 0))
    np.testing.assert_allclose(soft, spiking_softmax(x, params, axis=-1, options=SoftmaxOptions(shift=True)), atol=1e-6)
