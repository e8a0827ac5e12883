"""check_layer on layers with several inputs (merges), and on rules fed extra Jacobian axes."""

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

from jacverify import BackwardNonLinearLayer, check_layer
from jacverify.backward.rules.merging.maximum import BackwardMaximum
from jacverify.backward.rules.merging.subtract import BackwardSubtract
from jacverify.examples.tutorial import BackwardClipCorrect, Clip


class TiesToBoth(BackwardMaximum):
    """Gives the whole gradient to every tied input: sum 2g, not a subgradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = input
        zero = ops.zeros_like(gradient)
        return [
            ops.where(ops.greater_equal(a, b), gradient, zero),
            ops.where(ops.greater_equal(b, a), gradient, zero),
        ]


class SubtractSignLost(BackwardSubtract):
    """Forgets the minus sign of the second input."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return [gradient, gradient]


class SubtractShortGradient(BackwardSubtract):
    """Returns a gradient of the wrong shape for the second input."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return [gradient, -gradient[:, :2]]


class SubtractOneGradient(BackwardSubtract):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return -gradient


@pytest.mark.parametrize(
    "layer, shapes",
    [
        (L.Maximum(), [(4,), (4,)]),
        (L.Minimum(), [(2, 2), (2, 2)]),
        (L.Subtract(), [(3,), (3,)]),
        (L.Multiply(), [(4,), (4,), (4,)]),
        (L.Concatenate(axis=-1), [(2,), (3,)]),
        (L.Dot(axes=1), [(4,), (4,)]),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, keras.layers.Layer) else None,
)
def test_native_merge_rules_pass(layer, shapes):
    check = check_layer(layer, input_shape=shapes, examples=25, seed=2)
    assert check.verdict == "pass", check.summary()
    assert check.input_shape  # the packed shape is reported
    assert any("input" in note for note in check.notes)


def test_tie_handling_that_is_not_a_subgradient_is_boundary():
    check = check_layer(L.Maximum(), TiesToBoth, input_shape=[(4,), (4,)], examples=60, seed=1)
    assert check.verdict == "boundary", check.summary()
    ce = check.counterexample
    # The counterexample sits on a tie across the two inputs (stacked on axis 1).
    x = ce.input.reshape(2, 4)
    assert np.any(x[0] == x[1])


def test_sign_lost_on_second_input_fails():
    check = check_layer(L.Subtract(), SubtractSignLost, input_shape=[(3,), (3,)], seed=0,
                        examples=20)
    assert check.verdict == "fail", check.summary()
    assert check.counterexample.worst_coordinates[0]["index"][1] == 1  # the second input


def test_wrong_structure_or_shape_is_error_naming_the_input():
    check = check_layer(L.Subtract(), SubtractShortGradient, input_shape=[(3,), (3,)], seed=0,
                        examples=5)
    assert check.verdict == "error" and "input 1" in check.reason, check.reason
    check = check_layer(L.Subtract(), SubtractOneGradient, input_shape=[(3,), (3,)], seed=0,
                        examples=5)
    assert check.verdict == "error" and "1 gradient(s) for a call with 2" in check.reason


def test_inputs_given_are_the_examples_base():
    x = np.array([[0.5, 1.5, 2.5, -1.0, 1.0]], dtype="float32")
    check = check_layer(Clip(0, 2), BackwardClipCorrect, inputs=x, examples=15, seed=0)
    assert check.verdict == "pass"
    with pytest.raises(ValueError, match="shape"):
        check_layer(Clip(0, 2), BackwardClipCorrect, input_shape=(4,), inputs=x, seed=0)


class _ExtraAxesBroken(BackwardNonLinearLayer):
    """Correct for plain gradients; handles a gradient with extra axes itself, wrongly (it
    uses the first gradient of each example for all of them)."""

    def call(self, inputs, training=None, mask=None):
        gradient, x = inputs
        if len(gradient.shape) == 3:
            gradient = ops.repeat(gradient[:, :1], gradient.shape[1], axis=1)
            inside = ops.cast(ops.logical_and(x >= 0.0, x <= 2.0), gradient.dtype)
            return gradient * ops.expand_dims(inside, 1)
        return super().call(inputs, training=training, mask=mask)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inside = ops.cast(ops.logical_and(input >= 0.0, input <= 2.0), gradient.dtype)
        return gradient * inside


class _ExtraAxesRaises(BackwardClipCorrect):
    def call(self, inputs, training=None, mask=None):
        if len(inputs[0].shape) != 2:
            raise ValueError("only (batch, features) gradients")
        return super().call(inputs, training=training, mask=mask)


def test_rule_wrong_only_with_extra_gradient_axes_fails():
    check = check_layer(Clip(0, 2), _ExtraAxesBroken, input_shape=(4,), examples=10, seed=0)
    assert check.verdict == "fail", check.summary()
    assert "extra Jacobian axis" in check.reason


def test_rule_raising_with_extra_gradient_axes_is_error():
    check = check_layer(Clip(0, 2), _ExtraAxesRaises, input_shape=(4,), examples=10, seed=0)
    assert check.verdict == "error" and "extra Jacobian axis" in check.reason, check.reason
