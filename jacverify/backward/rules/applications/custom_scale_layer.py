"""Rule for ``CustomScaleLayer`` of ``keras.applications.InceptionResNetV2``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.keras_internals import CustomScaleLayer


@register_backward(CustomScaleLayer)
class BackwardCustomScaleLayer(BackwardLinearLayer):
    """``inputs[0] + inputs[1] * scale`` (the residual connection of InceptionResNetV2):
    ``[g, g * scale]``. Both inputs have the output's shape in the model."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return [gradient, gradient * keras.ops.cast(self.layer.scale, gradient.dtype)]
