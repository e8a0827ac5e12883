"""Rule for ``keras.layers.InputLayer``.

The builder never calls it (an input layer is not an operation of the model's graph); it is
registered so that every core layer has a rule, for code that walks layers itself.
"""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.InputLayer)
class BackwardInputLayer(BackwardLinearLayer):
    """The gradient, unchanged."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient
