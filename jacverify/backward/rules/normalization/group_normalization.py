"""Rule for ``keras.layers.GroupNormalization``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.normalization._common import standardize_vjp


@register_backward(keras.layers.GroupNormalization)
class BackwardGroupNormalization(BackwardNonLinearLayer):
    """The channels (``axis``) split into ``groups``; each group standardized over its channels
    and every other non-batch axis, then ``gamma``/``beta`` per channel: ``g * gamma`` goes
    through the standardization's vector-Jacobian product in the grouped shape."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self.input_dim_wo_batch) + 1
        self._axis = int(layer.axis) % rank
        if self._axis == 0:
            raise ValueError(f"GroupNormalization '{layer.name}': axis 0 is the batch axis.")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        dtype = gradient.dtype
        rank = len(gradient.shape)
        if layer.scale:
            shape = [1] * rank
            shape[self._axis] = -1
            gradient = gradient * ops.reshape(ops.cast(layer.gamma, dtype), shape)
        x = ops.cast(input, dtype)
        dims = list(ops.shape(x))
        channels = int(dims[self._axis])
        grouped = dims[: self._axis] + [layer.groups, channels // layer.groups]
        grouped += dims[self._axis + 1 :]
        grouped[0] = -1
        axes = [a for a in range(1, rank + 1) if a != self._axis]
        result = standardize_vjp(
            ops.reshape(gradient, grouped), ops.reshape(x, grouped), axes, layer.epsilon
        )
        return ops.reshape(result, ops.shape(x))
