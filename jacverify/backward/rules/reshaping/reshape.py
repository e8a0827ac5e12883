"""Rule for ``keras.layers.Reshape``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.reshaping._common import reshape_wo_batch


@register_backward(keras.layers.Reshape)
class BackwardReshape(BackwardLinearLayer):
    """Reshape the gradient back to the input shape (row-major order is kept both ways)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return reshape_wo_batch(gradient, self.input_dim_wo_batch)
