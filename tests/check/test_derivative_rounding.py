"""Directions where the layer's own float32 derivative is as far from the float64 references as
the rule is are not judged (``jacverify.check.derivative_rounding``): attention at scores of
1e4, where float32 rounding moves the derivative by 3e-4 of itself. A right rule passes there
(it was inconclusive, or even failed), a rule wrong by 1% is still caught."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jacverify import check_layer, registered_rules
from jacverify.check import value
from jacverify.check.adapters import Packing
from jacverify.check.compare import DirectionJudgement
from jacverify.check.derivative_rounding import rounding_unjudged, within_rounding
from jacverify.check.layer_configs._common import packed
from jacverify.keras_internals import ops_nn as knn

registered_rules()

from jacverify.backward.rules.ops.attention import BackwardDotProductAttentionOp  # noqa: E402


def _judgement(verdict, rule, autograd, reference, refs_agree=None):
    return DirectionJudgement(
        k=0, basis_index=0, location="smooth", rule=rule, autograd=autograd,
        reference=reference, left=reference, right=reference, tolerance=1e-6,
        error=abs(rule - reference), rel_error=math.nan, verdict=verdict, refs_agree=refs_agree,
    )


@pytest.mark.parametrize(("rule", "expected"), [
    (0.0129971 + 4.2e-6, True),  # where autograd in float32 is
    (0.0129971 - 4.2e-6 - 0.99e-6, True),  # as far, on the other side, within the tolerance
    (0.0129971 + 4.2e-6 + 1.01e-6, False),  # farther than autograd and the tolerance
    (0.0129971 - 1e-4, False),
])
def test_within_rounding_compares_the_rule_with_autograd_in_float32(rule, expected):
    first = _judgement("inconclusive", rule, 0.0129971 + 4.2e-6, 0.0129971)  # tolerance 1e-6
    again = _judgement("fail", rule, 0.0129971, 0.0129971, refs_agree=True)
    assert within_rounding(first, again) is expected
    merged = rounding_unjudged([first], [again])[0]
    assert (merged.verdict == "unjudged") is expected
    assert (merged.location == "noisy") is expected


def test_only_directions_the_references_made_inconclusive_are_left_unjudged():
    passed = _judgement("pass", 1.0, 1.0, 1.0)
    failed_again = _judgement("fail", 1.0, 1.1, 1.1, refs_agree=True)
    assert rounding_unjudged([passed], [failed_again])[0] is passed  # the first pass stands
    wrong_first = _judgement("fail", 2.0, 1.0, 1.0)
    assert not within_rounding(wrong_first, _judgement("fail", 2.0, 1.0, 1.0, True))
    disagreeing = _judgement("inconclusive", 1.0, 1.0, 1.1, refs_agree=False)
    assert not within_rounding(_judgement("inconclusive", 1.0, 1.0, 1.1), disagreeing)


#: The input at which check_registry(seed=0) found DotProductAttention #1 inconclusive: a
#: query and a key of magnitude 100 make scores of 1e4 / sqrt(2) (float32 ulp 5e-4), whose rounding
#: moves autograd in float32 (and a right float32 rule) 3e-4 away from the float64 references.
PACKED = [
    0.1257302165031433, -0.13210485875606537, 0.6404226422309875, 0.10490011423826218,
    -0.5356693863868713, 100.0, 1.3040000200271606, 0.9470809698104858,
    -0.7037352323532104, -1.2654215097427368, -0.6232744455337524, 0.04132597893476486,
    -2.32503080368042, -0.218791663646698, -1.2459110021591187, -0.7322673797607422,
    -0.5442590117454529, -0.3163001537322998, 0.4116305410861969, 100.0,
    -0.12853465974330902, 1.3664634227752686, -0.6651946902275085, 0.35151007771492004,
    0.9034701585769653, 0.0940122976899147, -0.7434992790222168, -0.9217253923416138,
    -0.4577258229255676, 0.22019512951374054, -1.0096181631088257, -0.20917557179927826,
]
SHAPES = [(2, 2, 2), (3, 2, 2), (3, 2, 2)]


def _large_scores():
    call, shape = packed(knn.DotProductAttention(), SHAPES)
    inputs = Packing(tuple(SHAPES)).split_array(np.array([PACKED], dtype="float32"))
    return call, shape, inputs


class AttentionOnePercentOff(BackwardDotProductAttentionOp):
    """The right gradients, 1% too large."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        right = super().call_on_reshaped_gradient(gradient, input, training, mask)
        return [None if r is None else r * 1.01 for r in right]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_right_rule_passes_at_ill_conditioned_scores(seed, monkeypatch):
    call, shape, inputs = _large_scores()
    result = check_layer(call, BackwardDotProductAttentionOp, input_shape=shape, inputs=inputs,
                         examples=10, seed=seed)
    assert result.verdict == "pass", result.reason
    assert "were not judged" in result.reference.autograd_note
    monkeypatch.setattr(value, "rounding_unjudged", lambda first, again: list(again))
    call, shape, inputs = _large_scores()
    before = check_layer(call, BackwardDotProductAttentionOp, input_shape=shape, inputs=inputs,
                         examples=10, seed=seed)
    assert before.verdict in ("inconclusive", "fail"), before.reason


def test_a_rule_one_percent_off_is_caught_at_ill_conditioned_scores():
    call, shape, inputs = _large_scores()
    result = check_layer(call, AttentionOnePercentOff, input_shape=shape, inputs=inputs,
                         examples=10, seed=1)
    assert result.verdict == "fail", result.reason


# ------------------------------------------------------------------- float64 sessions
# Keras on torch computes float64 matmul, dot, tensordot and norm in float32: torch autograd
# of a float64 attention is float32-precise, while finite differences and autograd of the
# float64 clone run in true float64.


def test_autograd_of_a_float64_layer_is_less_precise_where_keras_computes_float32():
    from jacverify.check.derivative_rounding import autograd_less_precise, autograd_precision
    from jacverify.check.references import true_float64

    eps32, eps64 = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)
    assert autograd_less_precise("float32", "float64", eps64)
    assert autograd_less_precise("float64", "float64", eps64)  # Keras' float32 products
    assert not autograd_less_precise("float64", "float64", eps32)  # a float32-precise clone
    assert autograd_precision("float64") == "float64 (Keras' float32 products)"
    assert autograd_precision("float32") == "float32"
    with true_float64():
        assert not autograd_less_precise("float64", "float64", eps64)
        assert autograd_precision("float64") == "float64"


def _large_scores64():
    call, shape = packed(knn.DotProductAttention(), SHAPES)
    inputs = Packing(tuple(SHAPES)).split_array(np.array([PACKED], dtype="float64"))
    return call, shape, inputs


@pytest.mark.parametrize("seed", [0, 1])
def test_a_right_rule_passes_at_ill_conditioned_scores_in_float64(float64_session, seed,
                                                                  monkeypatch):
    """Autograd of the float64 clone agrees with finite differences and the rule where
    Keras' float32 products move autograd of the layer: a pass, which was inconclusive when
    only a float32 layer got that second opinion."""
    call, shape, inputs = _large_scores64()
    result = check_layer(call, BackwardDotProductAttentionOp, input_shape=shape, inputs=inputs,
                         examples=10, seed=seed)
    assert result.dtype == "float64"
    assert result.verdict == "pass", result.reason
    assert "float64 (Keras' float32 products)" in result.reference.autograd_note
    monkeypatch.setattr(value, "autograd_less_precise", lambda layer, fd, eps: layer != fd)
    call, shape, inputs = _large_scores64()
    before = check_layer(call, BackwardDotProductAttentionOp, input_shape=shape, inputs=inputs,
                         examples=10, seed=seed)
    assert before.verdict in ("inconclusive", "fail"), before.reason


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rule_one_percent_off_is_caught_at_ill_conditioned_scores_in_float64(
        float64_session, seed):
    call, shape, inputs = _large_scores64()
    result = check_layer(call, AttentionOnePercentOff, input_shape=shape, inputs=inputs,
                         examples=10, seed=seed)
    assert result.dtype == "float64"
    assert result.verdict == "fail", result.reason
