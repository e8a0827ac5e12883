"""Rule for ``keras.layers.Normalization``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.keras_internals import private_member


@register_backward(keras.layers.Normalization)
class BackwardNormalization(BackwardLinearLayer):
    """``(x - mean) / max(sqrt(variance), epsilon)``: ``g / max(sqrt(variance), epsilon)``;
    with ``invert=True``, ``mean + x * max(sqrt(variance), epsilon)``: ``g * max(...)``.

    ``mean`` and ``variance`` (adapted or given) have the layer's broadcast shape (size 1 on the
    reduced axes). A layer that keeps the batch axis (``axis`` includes 0: one mean per batch
    position) is refused: its function depends on an example's position in the batch.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if 0 in private_member(layer, "keep_axis", ()):
            raise ValueError(
                f"{type(self).__name__}: '{layer.name}' normalizes each batch position "
                "separately (axis includes 0); not supported."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        variance = ops.cast(self.layer.variance, gradient.dtype)
        # Not ops.maximum: Keras's type promotion turns float64 into float32 there.
        std = ops.sqrt(variance)
        eps = ops.cast(keras.config.epsilon(), gradient.dtype)
        scale = ops.where(ops.greater(std, eps), std, eps)
        if self.layer.invert:
            return gradient * scale
        return gradient / scale
