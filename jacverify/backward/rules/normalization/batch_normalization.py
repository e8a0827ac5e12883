"""Rule for ``keras.layers.BatchNormalization`` (inference mode)."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.BatchNormalization)
class BackwardBatchNormalization(BackwardLinearLayer):
    """``g * gamma / sqrt(moving_variance + epsilon)``, broadcast along the layer's ``axis``
    (``gamma`` omitted when ``scale=False``; ``beta`` and the moving mean only shift the
    output and do not enter the Jacobian).

    The backward model runs the forward layers in inference mode (``training=None/False``),
    where batch normalization is the affine map defined by the moving statistics. In training
    mode the layer normalizes with the batch's own statistics, a different (non-linear, and
    batch-coupled) function that this rule does not describe. ``renorm`` does not change the
    inference-mode function, so it is covered too.
    """

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        rank = len(gradient.shape)
        axis = layer.axis % rank
        factor = ops.rsqrt(ops.cast(layer.moving_variance, gradient.dtype) + layer.epsilon)
        if layer.scale:
            factor = factor * ops.cast(layer.gamma, gradient.dtype)
        shape = [1] * rank
        shape[axis] = -1
        return gradient * ops.reshape(factor, shape)
