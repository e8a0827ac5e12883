"""Rule for ``keras.layers.Flatten``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.reshaping._common import reshape_wo_batch


@register_backward(keras.layers.Flatten)
class BackwardFlatten(BackwardLinearLayer):
    """Unflatten the gradient; with ``data_format="channels_first"`` the forward layer moves
    the channels last before flattening, so the gradient's channels are moved back first."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = list(self.input_dim_wo_batch)
        if self.layer.data_format == "channels_first" and len(dims) > 1:
            rank = len(dims) + 1
            gradient = reshape_wo_batch(gradient, [*dims[1:], dims[0]])
            return ops.transpose(gradient, (0, rank - 1, *range(1, rank - 1)))
        return reshape_wo_batch(gradient, dims)
