"""Cases for the tutorial's ``PlusConstant``: a linear layer whose rule is the identity."""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.folding import extra_axes, rows
from checks.layers import BackwardPlusConstant, PlusConstant
from jacverify.backward.base import BackwardLinearLayer


class PlusConstantNegated(BackwardLinearLayer):
    """``-g``: the sign of the constant leaked into the derivative."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return -gradient


class PlusConstantScaled(BackwardLinearLayer):
    """``g * (1 + 1e-3)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * (1.0 + 1e-3)


class PlusConstantNotImplemented(BackwardLinearLayer):
    """A rule left unwritten: it raises."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        raise NotImplementedError("PlusConstant's backward rule is not written yet")


class PlusConstantDropsExtraAxes(BackwardLinearLayer):
    """Handles extra Jacobian axes itself and returns only the first row of them."""

    def call(self, inputs, training=None, mask=None):
        gradient = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        extra = extra_axes(gradient, self.output_dim_wo_batch)
        if not extra:
            return gradient
        per_example = ops.reshape(gradient, [-1, rows(extra), *self.output_dim_wo_batch])
        return per_example[:, 0]


def _plus_constant() -> keras.layers.Layer:
    return PlusConstant(2.0)


CASES: list[Case] = [
    correct("plus_constant_correct", _plus_constant, (5,), BackwardPlusConstant,
            "the identity"),
    wrong("plus_constant_negated", _plus_constant, (5,), PlusConstantNegated, "fail", "sign",
          "returns -g"),
    wrong("plus_constant_scaled", _plus_constant, (5,), PlusConstantScaled, "fail", "scale",
          "returns g * (1 + 1e-3)"),
    wrong("plus_constant_not_implemented", _plus_constant, (5,), PlusConstantNotImplemented,
          "error", "raises", "raises NotImplementedError"),
    wrong("plus_constant_drops_extra_axes", _plus_constant, (5,), PlusConstantDropsExtraAxes,
          "error", "extra_axes",
          "with extra Jacobian axes, returns the first row only (shape (batch, *input))"),
]
