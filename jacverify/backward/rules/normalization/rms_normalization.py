"""Rule for ``keras.layers.RMSNormalization``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.normalization._common import (
    forward_axes,
    rms_vjp,
)


@register_backward(keras.layers.RMSNormalization)
class BackwardRMSNormalization(BackwardNonLinearLayer):
    """``scale * x / sqrt(mean(x^2) + epsilon)`` over the layer's axes:
    ``r g_hat - r^3 x mean(g_hat x)`` with ``g_hat = g * scale``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._rank = len(self.input_dim_wo_batch) + 1
        # The axes the forward normalizes (not always ``layer.axis`` on torch).
        self._axes = forward_axes(layer.axis, self._rank, f"RMSNormalization '{layer.name}'")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        # Keras multiplies by ``scale`` with plain broadcasting (aligned on the trailing axes),
        # also for axes that are not continuous (where it does not reshape ``scale``).
        gradient = gradient * ops.cast(layer.scale, gradient.dtype)
        epsilon = layer.epsilon if layer.epsilon is not None else keras.config.epsilon()
        return rms_vjp(gradient, ops.cast(input, gradient.dtype), self._axes, epsilon)
