"""Rule for ``LayerScale`` of ``keras.applications`` ConvNeXt models."""

from __future__ import annotations

from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.keras_internals import LayerScale


@register_backward(LayerScale)
class BackwardLayerScale(BackwardLinearLayer):
    """``x * gamma`` (``gamma`` one value per channel, on the last axis): ``g * gamma``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.cast(self.layer.gamma, gradient.dtype)
