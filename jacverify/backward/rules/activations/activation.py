"""Rule for ``keras.layers.Activation``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import activation_vjp


@register_backward(keras.layers.Activation)
class BackwardActivation(BackwardNonLinearLayer):
    """``g * f'(x)`` (or the full vjp for softmax-like activations)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._vjp = activation_vjp(layer.activation)
        self.is_linear = self._vjp is None

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self._vjp is None:
            return gradient
        return self._vjp(gradient, input)
