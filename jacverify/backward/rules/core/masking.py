"""Rule for ``keras.layers.Masking``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(keras.layers.Masking)
class BackwardMasking(BackwardLinearLayer):
    """``where(any(x != mask_value, axis=-1), x, 0)``: ``g`` on the kept steps, 0 on the masked
    ones (whose features all equal ``mask_value``).

    With ``mask_value == 0`` the layer is the identity (a masked step is all zeros, and zero is
    what it outputs), so the rule is ``g`` everywhere and linear. Otherwise a masked step is a
    jump (the output falls from ``mask_value`` to 0) with no derivative; the rule returns 0
    there, the derivative of the constant piece the point belongs to. (Torch autograd gives 0 on
    masked steps in both cases, which is wrong for ``mask_value == 0``.)
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = float(layer.mask_value) == 0.0

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self.is_linear:
            return gradient
        x = ops.cast(input, gradient.dtype)
        value = ops.convert_to_tensor(self.layer.mask_value, dtype=gradient.dtype)
        keep = ops.any(ops.not_equal(x, value), axis=-1, keepdims=True)
        return ops.where(keep, gradient, ops.zeros_like(gradient))
