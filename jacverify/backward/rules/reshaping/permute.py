"""Rule for ``keras.layers.Permute``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.Permute)
class BackwardPermute(BackwardLinearLayer):
    """Transpose the gradient by the inverse permutation."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = [int(d) for d in self.layer.dims]  # 1-based, output axis j+1 <- input dims[j]
        inverse = [0] * len(dims)
        for output_axis, input_axis in enumerate(dims, start=1):
            inverse[input_axis - 1] = output_axis
        return ops.transpose(gradient, (0, *inverse))
