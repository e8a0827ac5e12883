"""Rule for ``keras.layers.LayerNormalization``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.normalization._common import (
    broadcast_param,
    forward_axes,
    scale_by_std_vjp,
    standardize_vjp,
)


@register_backward(keras.layers.LayerNormalization)
class BackwardLayerNormalization(BackwardNonLinearLayer):
    """``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the layer's axes:
    ``g_x = r * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat))`` with ``g_hat = g * gamma``.

    With ``rms_scaling=True`` Keras computes ``gamma * x / sqrt(var + epsilon)`` (the variance
    centred, ``x`` not): ``g_x = r g_hat - r^3 (x - mean) mean(g_hat x)``. The same function in
    training and at inference (no statistics are kept).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._rank = len(self.input_dim_wo_batch) + 1
        # The axes the forward normalizes (not always ``layer.axis`` on torch).
        self._axes = forward_axes(layer.axis, self._rank, f"LayerNormalization '{layer.name}'",
                                  fused=not layer.rms_scaling)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        x = ops.cast(input, gradient.dtype)
        if layer.gamma is not None:
            gradient = gradient * broadcast_param(layer.gamma, self._axes, list(input.shape[1:]),
                                                  gradient.dtype)
        if layer.rms_scaling:
            return scale_by_std_vjp(gradient, x, self._axes, layer.epsilon)
        return standardize_vjp(gradient, x, self._axes, layer.epsilon)
