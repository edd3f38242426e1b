"""ONNX's own node tests for its attention ops (onnx.backend.test: `Attention` of opsets 23-25 with
masks, caches, GQA, soft-caps and windows; `ai.onnx.preview::FlexAttention` with its score_mod and
prob_mod subgraphs), the op and its `_expanded` twin alike. Each converts its one softmax, and the
converted model computes what ONNX's reference runtime computes from the expanded twin with its
Softmax replaced by the numpy Spiking-Softmax reference: the op's expansion is checked against
ONNX's own, not against ours."""

import warnings

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from sit_onnx.errors import SitOnnxError
from sit_onnx.graph.convert import RewriteOptions, rewrite_model
from sit_onnx.neurons import SoftmaxOptions, shipped_params, spiking_softmax
from sit_onnx.neurons.params import SHIFT_RANGE
from tests.helpers import run

ATTENTION_OPS = {"Attention", "FlexAttention"}
PARAMS = shipped_params(12, SHIFT_RANGE)


def _cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.name: c for c in collect_testcases(None)}


ALL = _cases()
OPS = sorted(n for n, c in ALL.items() if {node.op_type for node in c.model.graph.node} & ATTENTION_OPS)
LINEAR = sorted(n for n, c in ALL.items() if any(node.op_type == "LinearAttention" for node in c.model.graph.node))


def _twin(name: str) -> str:
    """The case's expanded twin: the op's function body written out by ONNX's test generator."""
    return next(t for t in (f"{name}_expanded", f"{name}_expanded_ver26") if t in ALL)


class Softmax(OpRun):
    """The reference runtime's Softmax, spiking: the numpy reference of the neurons, max-shifted."""

    op_domain = ""

    def _run(self, x, axis=-1):
        # the rewrite computes a bfloat16 or double site in float32, between casts
        work = x if x.dtype in (np.float16, np.float32) else x.astype(np.float32)
        spiking = spiking_softmax(work, PARAMS, axis=axis, options=SoftmaxOptions(shift=True))
        return (spiking.astype(x.dtype),)


def _feeds(case) -> dict:
    inputs, _ = case.data_sets[0]
    return {i.name: x for i, x in zip(case.model.graph.input, inputs)}


def _quietly(evaluate):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the reference divides 0/0 in fully masked rows, as ONNX specifies
        return evaluate()


def _low_precision(feeds: dict) -> bool:
    return any(x.dtype == np.float16 or "bfloat16" in str(x.dtype) for x in feeds.values())


@pytest.mark.parametrize("name", [n for name in OPS for n in (name, _twin(name))])
def test_attention_node_test_converts_and_matches_the_spiking_reference(name):
    case, twin = ALL[name], ALL[_twin(name.removesuffix("_expanded").removesuffix("_expanded_ver26"))]
    new, report = rewrite_model(case.model, RewriteOptions())
    assert len(report.converted) == 1
    assert not {"Softmax", "Exp"} & set(report.ops_after) and not ATTENTION_OPS & set(report.ops_after)
    feeds = _feeds(case)
    expected = _quietly(lambda: ReferenceEvaluator(twin.model, new_ops=[Softmax]).run(None, feeds))
    # In 16 bits, onnxruntime's matmuls round differently from the reference runtime's, and a logit
    # a rounding apart can cross a threshold; it has no bfloat16 CPU kernels at all (nor runs the
    # original). The reference runtime runs those converted models, spiking functions included.
    low = _low_precision(feeds)
    got = _quietly(lambda: ReferenceEvaluator(new).run(None, feeds)) if low else run(new, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        tolerance = 0 if low else 1e-6  # a double site computes in float32, as its kernels take
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", OPS)
def test_converted_attention_stays_near_onnxs_expected_output(name):
    """The spiking softmax's own error, seen through attention (K=12: about 0.01 on these cases),
    in onnxruntime where it has the kernels."""
    case = ALL[name]
    new, _ = rewrite_model(case.model, RewriteOptions())
    feeds = _feeds(case)
    evaluate = ReferenceEvaluator(new).run if any("bfloat16" in str(x.dtype) for x in feeds.values()) else None
    got = _quietly(lambda: evaluate(None, feeds))[0] if evaluate else run(new, feeds)[0]
    want = case.data_sets[0][1][0].astype(np.float64)
    got = got.astype(np.float64)
    assert np.array_equal(np.isfinite(got), np.isfinite(want))
    finite = np.isfinite(want)
    assert np.abs(got[finite] - want[finite]).max(initial=0.0) < 0.03


@pytest.mark.parametrize("name", LINEAR)
def test_linear_attention_has_no_softmax_and_says_so(name):
    with pytest.raises(SitOnnxError, match="no Softmax"):
        rewrite_model(ALL[name].model, RewriteOptions())


def test_the_suite_holds_the_cases_it_is_for():
    assert len(OPS) >= 50 and any("flexattention" in n for n in OPS) == ("test_flexattention" in ALL)
