"""Rule for ``keras.layers.Identity``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.Identity)
class BackwardIdentity(BackwardLinearLayer):
    """The gradient, unchanged."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient
