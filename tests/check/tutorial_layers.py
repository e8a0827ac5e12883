"""The tutorial's custom layers and rules (docs/tutorials/custom_backward.md, bundled in
jacverify.examples.tutorial), plus deliberately wrong variants the checker must catch."""

from __future__ import annotations

import keras

from jacverify.examples.tutorial import (  # noqa: F401 - re-exported for the tests
    BackwardClip,
    BackwardClipCorrect,
    BackwardPlusConstant,
    Clip,
    PlusConstant,
)
from jacverify.layers.layer import BackwardNonLinearLayer


class BackwardClipWrongAtVmax(BackwardNonLinearLayer):
    """Right everywhere except exactly at x == vmax, where it gives 2 (outside [0, 1])."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inside = keras.ops.logical_and(
            keras.ops.greater_equal(input, self.layer.vmin),
            keras.ops.less(input, self.layer.vmax),
        )
        at_vmax = keras.ops.equal(input, self.layer.vmax)
        slope = keras.ops.cast(inside, gradient.dtype) + 2.0 * keras.ops.cast(
            at_vmax, gradient.dtype
        )
        return gradient * slope


class BackwardClipThinBand(BackwardNonLinearLayer):
    """Right except in a band of width 1e-3 just inside vmax, where it gives 0 instead of 1."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inside = keras.ops.logical_and(
            keras.ops.greater_equal(input, self.layer.vmin),
            keras.ops.less_equal(input, self.layer.vmax - 1e-3),
        )
        return gradient * keras.ops.cast(inside, gradient.dtype)


# --------------------------------------------------------------- rules wrong in other ways
class ScaledReLURule(BackwardNonLinearLayer):
    """ReLU's rule times a factor (1 + 1e-3 by default): a small scale error."""

    factor = 1.0 + 1e-3

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slope = keras.ops.cast(keras.ops.greater(input, 0.0), gradient.dtype)
        return gradient * slope * self.factor


class SignFlippedReLURule(ScaledReLURule):
    factor = -1.0


class NaNRule(BackwardNonLinearLayer):
    """Returns NaN where the input is negative."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slope = keras.ops.cast(keras.ops.greater(input, 0.0), gradient.dtype)
        nan = keras.ops.cast(float("nan"), gradient.dtype)
        return keras.ops.where(keras.ops.less(input, 0.0), nan, gradient * slope)


class WrongShapeRule(BackwardNonLinearLayer):
    """Drops the last coordinate."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient[..., :-1]


class RaisingRule(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        raise RuntimeError("this rule is not implemented yet")


class BatchMixingRule(BackwardNonLinearLayer):
    """ReLU's rule with the mask of the batch's first example for every example."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slope = keras.ops.cast(keras.ops.greater(input[:1], 0.0), gradient.dtype)
        return gradient * slope


class DenseTransposedRule(BackwardNonLinearLayer):
    """A Dense rule that forgets to transpose the kernel (shapes agree for a square layer)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return keras.ops.matmul(gradient, keras.ops.cast(self.layer.kernel, gradient.dtype))
