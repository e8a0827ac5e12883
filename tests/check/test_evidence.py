"""collect_evidence: the line through a counterexample and the Jacobians, as JSON data."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.check.evidence import collect_evidence
from jacverify.check.references import make_fd_model
from jacverify.examples.tutorial import BackwardClip, BackwardClipCorrect, Clip


def _setup(rule_class, shape=(2,), layer=None):
    layer = layer or Clip(0.0, 2.0)
    layer(np.zeros((1, *shape), dtype="float32"))
    rule = rule_class(layer=layer, input_dim_wo_batch=list(shape), output_dim_wo_batch=list(shape))
    fd = make_fd_model(layer, shape, np.random.default_rng(0))
    return layer, rule, fd


X = np.array([[0.5, -0.5]], dtype="float32")
G = np.array([[1.0, 1.0]], dtype="float32")


def test_line_through_a_wrong_rule_shows_it_off_and_marks_the_kink():
    layer, rule, fd = _setup(BackwardClip)
    evidence = collect_evidence(layer, rule, fd, X, G, np.array([0.0, 1.0]))
    json.dumps(evidence, allow_nan=False)  # JSON-ready
    line = evidence["line"]
    s = np.array(line["s"])
    origin = line["origin_index"]
    assert s[origin] == 0.0
    assert 35 <= s.size <= 50
    assert line["direction_name"] == "the basis vector of x[0, 1]"
    assert line["coordinate"] == {"label": "x[0, 1]", "value": -0.5}
    # At x[0, 1] = -0.5 (below vmin) the tutorial's rule gives -1; the references give 0.
    assert line["rule"][origin] == pytest.approx(-1.0)
    assert line["finite_differences"][origin] == pytest.approx(0.0, abs=1e-6)
    assert line["autograd"][origin] == pytest.approx(0.0)
    # The kink at x[0, 1] = 0 lies at s = 0.5, inside the line, with one-sided slopes 0 and 1.
    kink = next(k for k in line["kinks"] if k["s"] == pytest.approx(0.5))
    assert kink["inside"] and kink["one_sided_differ"]
    assert (kink["left"], kink["right"]) == (pytest.approx(0.0, abs=1e-6), pytest.approx(1.0))
    assert "x[0, 1]" in kink["label"]
    assert s.min() <= -0.5 and s.max() >= 0.5
    # Past the kink (inside the range) rule and references agree.
    inside = (s > 0.6) & (s < 2.4)
    assert inside.any()
    np.testing.assert_allclose(np.array(line["rule"])[inside], 1.0)
    np.testing.assert_allclose(np.array(line["finite_differences"])[inside], 1.0, atol=1e-6)


def test_jacobians_of_a_small_layer():
    layer, rule, fd = _setup(BackwardClip)
    jacobian = collect_evidence(layer, rule, fd, X, G)["jacobian"]
    np.testing.assert_allclose(jacobian["rule"], [[1.0, 0.0], [0.0, -1.0]])
    np.testing.assert_allclose(jacobian["reference"], [[1.0, 0.0], [0.0, 0.0]], atol=1e-12)
    assert jacobian["input_labels"] == ["x[0, 0]", "x[0, 1]"]
    assert jacobian["output_labels"] == ["y[0, 0]", "y[0, 1]"]
    assert "autograd" in jacobian["reference_name"]


def test_without_a_direction_the_worst_coordinate_is_taken():
    layer, rule, fd = _setup(BackwardClip)
    evidence = collect_evidence(layer, rule, fd, X, G)
    assert evidence["line"]["direction_name"] == "the basis vector of x[0, 1]"


def test_a_right_rule_follows_the_references_and_a_given_kink_is_marked():
    layer, rule, fd = _setup(BackwardClipCorrect)
    x = np.array([[2.0, 1.0]], dtype="float32")  # x[0, 0] on vmax
    evidence = collect_evidence(layer, rule, fd, x, G, np.array([1.0, 0.0]), kink_position=0.0)
    line = evidence["line"]
    given = [k for k in line["kinks"] if k["label"] == "the kink"]
    assert given and given[0]["s"] == 0.0
    assert (given[0]["left"], given[0]["right"]) == (pytest.approx(1.0), pytest.approx(0.0))
    s = np.array(line["s"])
    # The line reaches the other kink too (x[0, 0] = 0 at s = -2).
    assert any(k["s"] == pytest.approx(-2.0) for k in line["kinks"])
    away = np.all([np.abs(s - k["s"]) > 1e-3 for k in line["kinks"]], axis=0)
    np.testing.assert_allclose(np.array(line["rule"])[away],
                               np.array(line["finite_differences"])[away], atol=1e-6)


def test_large_layers_get_no_jacobian():
    layer, rule, fd = _setup(BackwardClipCorrect, shape=(6,))
    x = np.linspace(-1, 3, 6, dtype="float32")[None]
    evidence = collect_evidence(layer, rule, fd, x, np.ones((1, 6), "float32"), max_jacobian=4)
    assert evidence["jacobian"] is None
    assert evidence["line"] is not None


class _Raises(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        raise RuntimeError("broken rule")


def test_a_rule_that_raises_leaves_notes_not_exceptions():
    layer, rule, fd = _setup(_Raises)
    evidence = collect_evidence(layer, rule, fd, X, G, np.array([1.0, 0.0]))
    assert evidence["line"]["rule"] is None
    assert any("broken rule" in note for note in evidence["line"]["notes"])
    assert evidence["line"]["finite_differences"] is not None
    assert evidence["jacobian"]["rule"] is None
    json.dumps(evidence, allow_nan=False)


def test_a_random_direction_when_the_rule_agrees_everywhere():
    layer, rule, fd = _setup(BackwardClipCorrect, shape=(3,), layer=keras.layers.ReLU())
    x = np.array([[0.5, -0.25, 1.5]], dtype="float32")
    evidence = collect_evidence(layer, rule, fd, x, np.ones((1, 3), "float32"))
    assert evidence["line"]["direction_name"] == "a random direction"
    assert evidence["line"]["coordinate"] is None


def test_given_candidate_kinks_give_the_evidence_read_from_the_config():
    from jacverify.check.kinks import config_kinks

    layer, rule, fd = _setup(BackwardClip)
    read = collect_evidence(layer, rule, fd, X, G, np.array([0.0, 1.0]))
    given = collect_evidence(layer, rule, fd, X, G, np.array([0.0, 1.0]),
                             kinks=config_kinks(layer, dtype="float32"))
    assert given == read
    assert any("x[0, 1]" in k["label"] for k in read["line"]["kinks"])
    # no candidate kinks given: none marked, the line is still drawn
    bare = collect_evidence(layer, rule, fd, X, G, np.array([0.0, 1.0]), kinks=[])
    assert bare["line"]["kinks"] == [] and len(bare["line"]["rule"]) == len(bare["line"]["s"])
