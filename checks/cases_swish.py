"""Cases for ``Swish``: ``x * sigmoid(beta * x)``, a smooth activation."""

from __future__ import annotations

import keras
from keras import ops

from checks.case import Case, correct, wrong
from checks.folding import extra_axes, rows
from checks.layers import BackwardSwish, Swish, const, swish_derivative


class SwishMissingBeta(BackwardSwish):
    """``s + x s (1 - s)``: the inner factor ``beta`` of ``sigmoid(beta x)`` is dropped."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        s = ops.sigmoid(const(self.layer.beta, x) * x)
        return gradient * (s + x * s * (1 - s))


class SwishAtOutput(BackwardSwish):
    """``swish'(swish(x))`` instead of ``swish'(x)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        y = x * ops.sigmoid(const(self.layer.beta, x) * x)
        return gradient * swish_derivative(y, self.layer.beta)


class SwishBatchMean(BackwardSwish):
    """The derivative at the batch's mean input, for every example."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.mean(ops.cast(input, gradient.dtype), axis=0, keepdims=True)
        return gradient * swish_derivative(x, self.layer.beta)


class SwishFirstRowOnly(BackwardSwish):
    """With extra Jacobian axes, propagates the first row and copies it to the others."""

    def call(self, inputs, training=None, mask=None):
        gradient, x = inputs
        extra = extra_axes(gradient, self.output_dim_wo_batch)
        if not extra:
            return self.call_on_reshaped_gradient(gradient, input=x)
        out = list(self.output_dim_wo_batch)
        first = ops.reshape(gradient, [-1, rows(extra), *out])[:, 0]
        result = self.call_on_reshaped_gradient(first, input=x)
        result = ops.repeat(ops.expand_dims(result, 1), rows(extra), axis=1)
        return ops.reshape(result, [-1, *extra, *self.input_dim_wo_batch])


class SwishScaled(BackwardSwish):
    """``g * swish'(x) * (1 + 1e-3)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, input) * (1.0 + 1e-3)


class SwishOverflow(BackwardSwish):
    """``sigmoid`` written ``exp(b x) / (1 + exp(b x))``: inf / inf = NaN for large ``x``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        b = const(self.layer.beta, x)
        e = ops.exp(b * x)
        s = e / (1 + e)
        return gradient * (s + b * x * s * (1 - s))


class SwishAttributeTypo(BackwardSwish):
    """Reads ``self.layer.alpha`` (the layer's parameter is ``beta``): raises."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * swish_derivative(ops.cast(input, gradient.dtype), self.layer.alpha)


def _swish() -> keras.layers.Layer:
    return Swish(1.5)


CASES: list[Case] = [
    correct("swish_correct", _swish, (6,), BackwardSwish, "g * (s + beta x s (1 - s))"),
    wrong("swish_missing_beta", _swish, (6,), SwishMissingBeta, "fail", "chain_rule",
          "drops the inner factor beta of sigmoid(beta x) in the derivative"),
    wrong("swish_at_output", _swish, (6,), SwishAtOutput, "fail", "output_not_input",
          "evaluates swish' at swish(x) instead of x"),
    wrong("swish_batch_mean", _swish, (6,), SwishBatchMean, "fail", "batch",
          "uses the derivative at the batch's mean input for every example"),
    wrong("swish_first_row_only", _swish, (6,), SwishFirstRowOnly, "fail", "extra_axes",
          "with extra Jacobian axes, propagates the first row and copies it to the others"),
    wrong("swish_scaled", _swish, (6,), SwishScaled, "fail", "scale",
          "returns the right value times (1 + 1e-3)"),
    wrong("swish_overflow", _swish, (6,), SwishOverflow, "fail", "nan_inf",
          "computes sigmoid as exp(bx) / (1 + exp(bx)): NaN once exp overflows"),
    wrong("swish_attribute_typo", _swish, (6,), SwishAttributeTypo, "error", "raises",
          "reads self.layer.alpha, which does not exist"),
]
