"""Ties of an order statistic (median, quantile) are compound kinks: a direction that moves
tied coordinates apart is judged as a kink, where the rule may take any of the orderings'
slopes (the median of three tied values does not move along ``e_i``, yet the gradient ``e_i``
of one ordering is a valid choice). Right rules pass at full ties; a rule giving the median's
gradient to every tied value, or to a value that is not tied with it, is still caught."""

import numpy as np
import pytest
from keras import ops

from jacverify import check_layer
from jacverify.backward.rules.ops.sorting import BackwardQuantileOp
from jacverify.check.kinks import tie_directions
from jacverify.check.layer_configs._common import packed
from jacverify.keras_internals import ops_numpy as knp

EXAMPLES = 30


def test_tie_directions_are_those_moving_tied_coordinates_apart():
    x = np.array([1.0, 2.0, 1.0, 3.0, 3.0])
    # Basis directions: each tied coordinate moves away from its partner, 2.0 is alone.
    np.testing.assert_array_equal(tie_directions(x, np.eye(5)),
                                  [True, False, True, True, True])
    together = np.array([[1.0, 0.0, 1.0, 0.0, 0.0],  # both 1.0 move alike
                         [0.0, 7.0, 0.0, 5.0, 5.0],  # both 3.0 move alike, 2.0 is alone
                         [0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(tie_directions(x, together), [False, False, False])
    assert not tie_directions(np.arange(4.0), np.eye(4)).any()  # no ties at all


def _median():
    """``median(x, axis=1)`` of five values: at a full tie, any one of them may get ``g``."""
    return packed(knp.Median(axis=1), (5,))


class MedianToEveryTie(BackwardQuantileOp):
    """Wrong at ties: every value equal to the median gets the median's whole gradient (the
    sum of the gradients is then a multiple of ``g``, no ordering's slope)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        chosen = super().call_on_reshaped_gradient(gradient, input)
        x = ops.cast(input, chosen.dtype)
        tied = ops.equal(x, ops.median(x, axis=1, keepdims=True))
        whole = ops.sum(chosen, axis=-1, keepdims=True)
        return ops.where(ops.logical_and(tied, ops.equal(chosen, 0.0)), whole, chosen)


class MedianToTheMaximum(BackwardQuantileOp):
    """Wrong: the gradient goes to the largest value (a tied maximum when all values tie,
    a value that is not the median otherwise)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        top = ops.one_hot(ops.argmax(x, axis=-1), x.shape[-1], dtype=gradient.dtype)
        return top * ops.reshape(gradient, (-1, 1))


def test_the_median_rule_passes_at_full_ties():
    layer, shape = _median()
    check = check_layer(layer, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()
    assert check.examples_by_kind["tie"] > 0
    assert check.directions_by_location.get("kink", 0) > 0


@pytest.mark.parametrize(
    "rule, verdicts",
    [(MedianToEveryTie, ("boundary",)), (MedianToTheMaximum, ("fail",))],
    ids=["to_every_tie", "to_the_maximum"],
)
def test_wrong_median_rules_are_caught(rule, verdicts):
    layer, shape = _median()
    check = check_layer(layer, rule, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict in verdicts, check.summary()
