"""Rule for ``keras.layers.UnitNormalization``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.normalization._common import per_example_axes

#: The epsilon ``UnitNormalization.call`` passes to ``ops.normalize``.
_EPSILON = 1e-12


def l2_normalize_vjp(gradient, x, axes, epsilon):
    """``g^T J`` of ``x * min(rsqrt(sum(x^2)), 1 / epsilon)`` over ``axes``:
    ``inv * (g - w * x_hat * <x_hat, g>)`` with ``w`` 1 below the cap, 0 above, 1/2 at it
    (torch's ``minimum`` convention at the tie; any weight in [0, 1] is a subgradient)."""
    cap = ops.cast(1.0 / epsilon, x.dtype)
    inv = ops.rsqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))
    below = ops.less(inv, cap)
    capped = ops.where(below, inv, cap)
    weight = ops.cast(below, x.dtype) + 0.5 * ops.cast(ops.equal(inv, cap), x.dtype)
    x_hat = x * capped
    projection = ops.sum(x_hat * gradient, axis=axes, keepdims=True)
    return capped * (gradient - weight * x_hat * projection)


@register_backward(keras.layers.UnitNormalization)
class BackwardUnitNormalization(BackwardNonLinearLayer):
    """``x / max(|x|_2, 1e-12)`` along the layer's axes (``ops.normalize``)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self.input_dim_wo_batch) + 1
        self._axes = per_example_axes(layer.axis, rank, f"UnitNormalization '{layer.name}'")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return l2_normalize_vjp(gradient, ops.cast(input, gradient.dtype), self._axes, _EPSILON)
