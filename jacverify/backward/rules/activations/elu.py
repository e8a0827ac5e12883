"""Rule for ``keras.layers.ELU``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import elu_derivative


@register_backward(keras.layers.ELU)
class BackwardELU(BackwardNonLinearLayer):
    """``g`` where ``x > 0``, ``alpha * exp(x) * g`` elsewhere (torch: ``alpha`` at 0)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.cast(elu_derivative(input, self.layer.alpha), gradient.dtype)
