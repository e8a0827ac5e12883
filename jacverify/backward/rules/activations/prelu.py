"""Rule for ``keras.layers.PReLU``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.PReLU)
class BackwardPReLU(BackwardNonLinearLayer):
    """``g`` where ``x > 0``, ``alpha * g`` elsewhere (``alpha`` broadcast over the shared axes).

    At ``x == 0`` the value is ``alpha`` (torch's ``prelu`` convention, a one-sided
    derivative). Autograd through Keras' ``relu(x) - alpha * relu(-x)`` gives 0 there, which is
    not a subgradient when ``alpha > 0``.
    """

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        alpha = ops.cast(self.layer.alpha, gradient.dtype)
        return ops.where(ops.greater(input, 0), gradient, gradient * alpha)
