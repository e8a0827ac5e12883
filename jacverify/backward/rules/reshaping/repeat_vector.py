"""Rule for ``keras.layers.RepeatVector``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.RepeatVector)
class BackwardRepeatVector(BackwardLinearLayer):
    """Sum the gradient over the ``n`` copies."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.sum(gradient, axis=1)
