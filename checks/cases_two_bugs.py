"""Cases for rules wrong in value AND broken in another property (they raise on extra Jacobian
axes, return the wrong dtype, or are plain callables without jacverify's attributes).

The checker must report the wrong value (``fail`` or ``boundary``, with its coordinate), not
only the other breakage: a user who fixes the crash must not ship the wrong derivative. The
native ones reproduce, on jacverify's own rules, faults met in another library's rules: ELU with
``alpha=0.5`` wrong for every ``x < 0``, ``ReLU(max_value=0.0)`` wrong for ``x > 0``,
``Maximum`` giving every tied input the full gradient, softplus returning NaN near
``x = 100``, each also failing when the gradient carries an extra Jacobian axis.
"""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.layers import BackwardPairMax, BackwardSwish, BackwardVee, PairMax, Swish, Vee, const
from jacverify.backward.rules.activations.activation import BackwardActivation
from jacverify.backward.rules.activations.elu import BackwardELU
from jacverify.backward.rules.activations.relu import BackwardReLU
from jacverify.backward.rules.merging.maximum import BackwardMaximum

L = keras.layers


class NoExtraAxes:
    """Mixin: the rule raises when the gradient carries extra Jacobian axes (as rules written
    for ``(batch, *output)`` gradients only do)."""

    def call(self, inputs, training=None, mask=None):
        gradient = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        expected = 1 + len(self.output_dim_wo_batch)
        if len(gradient.shape) != expected:
            raise RuntimeError(
                f"expected a gradient of rank {expected}, got shape {tuple(gradient.shape)}"
            )
        return super().call(inputs, training=training, mask=mask)


class ELUIgnoresAlphaNoExtraAxes(NoExtraAxes, BackwardELU):
    """``exp(x)`` below 0 whatever ``alpha`` (wrong for ``alpha != 1``), and no extra axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        return gradient * ops.where(ops.greater(x, 0), const(1.0, x), ops.exp(x))


class ReLUForgetsZeroMaxValueNoExtraAxes(NoExtraAxes, BackwardReLU):
    """``1[x > 0]``: forgets ``max_value`` (with ``max_value=0`` the layer is constant), and
    no extra axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        return gradient * ops.cast(ops.greater(x, 0), gradient.dtype)


class MaximumTiesFullNoExtraAxes(NoExtraAxes, BackwardMaximum):
    """The full gradient to every input equal to the maximum, and no extra axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        xs = [ops.cast(x, gradient.dtype) for x in input]
        peak = xs[0]
        for x in xs[1:]:
            peak = ops.maximum(peak, x)
        return [gradient * ops.cast(ops.equal(x, peak), gradient.dtype) for x in xs]


class SoftplusOverflowNoExtraAxes(NoExtraAxes, BackwardActivation):
    """``exp(x) / (1 + exp(x))``: ``inf / inf = NaN`` once ``exp(x)`` overflows (x > 88 in
    float32), and no extra axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        e = ops.exp(ops.cast(input, gradient.dtype))
        return gradient * e / (1 + e)


class SwishMissingBetaInFloat64(BackwardSwish):
    """Drops ``beta`` inside the derivative, and returns float64 for a float32 layer."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, "float64")
        s = ops.sigmoid(x * self.layer.beta)
        return ops.cast(gradient, "float64") * (s + x * s * (1 - s))


class VeeSignFlippedNoExtraAxes(NoExtraAxes, BackwardVee):
    """``-left`` and ``right`` swapped in sign above the center, and no extra axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return -super().call_on_reshaped_gradient(gradient, input)


class PairMaxTiesFullNoExtraAxes(NoExtraAxes, BackwardPairMax):
    """The full gradient to both inputs where they tie, and no extra axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        a, b = (ops.cast(t, gradient.dtype) for t in input)
        share_a = ops.cast(ops.greater_equal(a, b), gradient.dtype)
        share_b = ops.cast(ops.greater_equal(b, a), gradient.dtype)
        return [gradient * share_a, gradient * share_b]


def _lead(mask, gradient):
    """``mask`` (batch, *shape) with an axis inserted for each extra axis of ``gradient``."""
    while len(mask.shape) < len(gradient.shape):
        mask = ops.expand_dims(mask, 1)
    return mask


class CallableMaximum:
    """A rule for ``Maximum`` that is a plain class (not a jacverify layer): it keeps only the
    operation, not ``output_dim_wo_batch``; half the gradient to each tied input."""

    is_linear = False

    def __init__(self, layer, input_dim_wo_batch=None, output_dim_wo_batch=None, **kwargs):
        self.layer = layer

    def __call__(self, inputs):
        gradient, xs = inputs
        xs = [ops.cast(x, gradient.dtype) for x in xs]
        peak = xs[0]
        for x in xs[1:]:
            peak = ops.maximum(peak, x)
        hits = [_lead(ops.cast(ops.equal(x, peak), gradient.dtype), gradient) for x in xs]
        count = hits[0]
        for hit in hits[1:]:
            count = count + hit
        return [gradient * hit / count for hit in hits]


class CallableMaximumTiesFull(CallableMaximum):
    """:class:`CallableMaximum` giving every tied input the full gradient."""

    def __call__(self, inputs):
        gradient, xs = inputs
        xs = [ops.cast(x, gradient.dtype) for x in xs]
        peak = xs[0]
        for x in xs[1:]:
            peak = ops.maximum(peak, x)
        return [gradient * _lead(ops.cast(ops.equal(x, peak), gradient.dtype), gradient)
                for x in xs]


def _elu_half():
    return L.ELU(alpha=0.5)


def _relu_max0():
    return L.ReLU(max_value=0.0)


def _softplus():
    return L.Activation("softplus")


def _swish_beta2():
    return Swish(beta=2.0)


def _vee():
    return Vee(center=0.5, left=1.0, right=2.0)


CASES: list[Case] = [
    wrong("elu_half_alpha_no_extra_axes", _elu_half, (6,), ELUIgnoresAlphaNoExtraAxes,
          "fail", "two_bugs", "exp(x) instead of 0.5 exp(x) below 0; raises on extra axes"),
    wrong("relu_max0_no_extra_axes", _relu_max0, (6,), ReLUForgetsZeroMaxValueNoExtraAxes,
          "fail", "two_bugs", "1 above 0 where ReLU(max_value=0) is constant; raises on "
          "extra axes"),
    wrong("maximum_all_to_every_max_no_extra_axes", L.Maximum, [(4,), (4,)],
          MaximumTiesFullNoExtraAxes, "boundary", "two_bugs",
          "every tied input gets the full gradient; raises on extra axes"),
    wrong("softplus_nan_no_extra_axes", _softplus, (6,), SoftplusOverflowNoExtraAxes, "fail",
          "two_bugs", "NaN once exp(x) overflows (x near 100); raises on extra axes"),
    wrong("swish_missing_beta_float64", _swish_beta2, (5,), SwishMissingBetaInFloat64, "fail",
          "two_bugs", "drops beta inside the derivative; returns float64 for float32"),
    wrong("vee_sign_flipped_no_extra_axes", _vee, (5,), VeeSignFlippedNoExtraAxes, "fail",
          "two_bugs", "sign flipped; raises on extra axes"),
    wrong("pair_max_all_to_both_no_extra_axes", PairMax, [(4,), (4,)],
          PairMaxTiesFullNoExtraAxes, "boundary", "two_bugs",
          "both tied inputs get the full gradient; raises on extra axes"),
    wrong("maximum_callable_ties_full", L.Maximum, [(4,), (4,)], CallableMaximumTiesFull,
          "boundary", "tie", "a plain callable rule without output_dim_wo_batch, giving "
          "every tied input the full gradient"),
    correct("maximum_callable_correct", L.Maximum, [(4,), (4,)], CallableMaximum,
            "a plain callable rule without output_dim_wo_batch, ties split evenly"),
]
