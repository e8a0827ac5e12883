"""Rule for ``keras.layers.ReLU``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import relu_derivative


@register_backward(keras.layers.ReLU)
class BackwardReLU(BackwardNonLinearLayer):
    """``g * relu'(x)`` for every ``max_value``, ``negative_slope`` and ``threshold``.

    At ``x == threshold`` (a kink when ``threshold == 0``, a jump otherwise) the value is
    ``negative_slope``, the derivative of the piece Keras assigns the point to; at
    ``x == max_value`` it is torch's (1 through ``clip``, 0 through ``relu6``).
    """

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        slope = relu_derivative(
            input,
            negative_slope=layer.negative_slope,
            max_value=layer.max_value,
            threshold=layer.threshold,
        )
        return gradient * ops.cast(slope, gradient.dtype)
