"""Rules for ``keras.layers.GlobalMaxPooling1D``, ``2D`` and ``3D``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.pooling._common import spatial_axes


class _BackwardGlobalMaxPooling(BackwardNonLinearLayer):
    """``g`` shared evenly by the maxima of each channel (``g / m`` on each of ``m`` tied
    maxima, zero elsewhere), which is torch's convention for ``amax``."""

    n_spatial = 0

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        axes = spatial_axes(self.n_spatial, self.layer.data_format)
        x = ops.cast(input, gradient.dtype)
        is_max = ops.cast(ops.equal(x, ops.max(x, axis=axes, keepdims=True)), gradient.dtype)
        weights = is_max / ops.sum(is_max, axis=axes, keepdims=True)
        if not self.layer.keepdims:
            for axis in axes:
                gradient = ops.expand_dims(gradient, axis)
        return gradient * weights


@register_backward(keras.layers.GlobalMaxPooling1D)
class BackwardGlobalMaxPooling1D(_BackwardGlobalMaxPooling):
    """Rule for ``GlobalMaxPooling1D``."""

    n_spatial = 1


@register_backward(keras.layers.GlobalMaxPooling2D)
class BackwardGlobalMaxPooling2D(_BackwardGlobalMaxPooling):
    """Rule for ``GlobalMaxPooling2D``."""

    n_spatial = 2


@register_backward(keras.layers.GlobalMaxPooling3D)
class BackwardGlobalMaxPooling3D(_BackwardGlobalMaxPooling):
    """Rule for ``GlobalMaxPooling3D``."""

    n_spatial = 3
