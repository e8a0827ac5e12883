"""Rule for ``keras.layers.LeakyReLU``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.LeakyReLU)
class BackwardLeakyReLU(BackwardNonLinearLayer):
    """``g`` where ``x > 0``, ``negative_slope * g`` elsewhere (torch: the slope at 0)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slope = ops.convert_to_tensor(self.layer.negative_slope, dtype=gradient.dtype)
        return ops.where(ops.greater(input, 0), gradient, gradient * slope)
