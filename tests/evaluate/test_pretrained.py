"""Fidelity on a real pretrained model, no fine-tuning: rxnmapper 0.4.3's ALBERT (12 layers sharing
weights, 8 heads), exported by torch, on the reaction SMILES of rxnmapper's own tests. The sets
fitted to softmax rows (the default) must beat the sets fitted to exp's RMSE and reach issue 10's
goals: min cosine of the MLM logits >= 0.9995 at K=8, >= 0.9999 at K=12. `make test` downloads the
wheel (its weights are read, nothing is installed)."""

import numpy as np
import pytest

from sit_onnx.graph.convert import RewriteOptions
from tests.evaluate.pretrained import conversion_measure, require_wheel

require_wheel("rxnmapper", "0.4.3")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    from bench.fidelity import rxnmapper_albert

    measure = conversion_measure(rxnmapper_albert, tmp_path_factory.mktemp("albert"))
    return lambda options: measure(options)[0]


@pytest.mark.parametrize("steps, goal", [(8, 0.9995), (12, 0.9999)])
def test_default_sets_reach_the_goal_and_beat_the_exp_fits(albert, steps, goal):
    default = albert(RewriteOptions(steps=steps))
    paper = albert(RewriteOptions(steps=steps, objective="exp-rmse"))
    assert default["min_cosine"] >= goal > paper["min_cosine"]
    assert default["top1"] >= paper["top1"]  # argmax over 591 tokens: near-ties flip either way


def test_fidelity_grows_with_the_time_steps(albert):
    cosines = [albert(RewriteOptions(steps=k))["min_cosine"] for k in (4, 8, 16)]
    assert cosines == sorted(cosines) and cosines[0] < 0.9995 and np.isfinite(cosines).all()


def test_gelu_sets_weighted_where_ffn_inputs_fall(albert):
    """Softmax and the 13 GELUs converted at K=12: 0.99902 with the shipped sets, weighted by where
    trained FFN inputs fall; the uniformly fitted sets before them gave 0.99801."""
    assert albert(RewriteOptions(steps=12, activations=("gelu",)))["min_cosine"] >= 0.9985
