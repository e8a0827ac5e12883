"""Rules for ``keras.layers.GlobalMaxPooling1D``, ``2D`` and ``3D``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.pooling._common import spatial_axes


@register_backward(
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
class BackwardGlobalMaxPooling(BackwardNonLinearLayer):
    """``g`` shared evenly by the maxima of each channel (``g / m`` on each of ``m`` tied
    maxima, zero elsewhere), which is torch's convention for ``amax``."""

    @property
    def n_spatial(self) -> int:
        """The number of spatial axes (1, 2 or 3), from the shape the layer is built for."""
        return spatial_rank(self.input_dim_wo_batch)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        axes = spatial_axes(self.n_spatial, self.layer.data_format)
        x = ops.cast(input, gradient.dtype)
        is_max = ops.cast(ops.equal(x, ops.max(x, axis=axes, keepdims=True)), gradient.dtype)
        weights = is_max / ops.sum(is_max, axis=axes, keepdims=True)
        if not self.layer.keepdims:
            for axis in axes:
                gradient = ops.expand_dims(gradient, axis)
        return gradient * weights
