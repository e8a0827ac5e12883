"""Rules for ``keras.layers.ZeroPadding1D``, ``ZeroPadding2D`` and ``ZeroPadding3D``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.reshaping._common import spatial_axes, take


class _BackwardZeroPadding(BackwardLinearLayer):
    """Crop the padded positions off the gradient (the padding is constant)."""

    n_spatial = 0

    def _pads(self):
        """``((before, after), ...)`` per spatial axis."""
        return [tuple(int(p) for p in pad) for pad in self.layer.padding]

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        for axis, (before, after) in zip(
            spatial_axes(self.n_spatial, self.layer.data_format), self._pads(), strict=True
        ):
            length = int(gradient.shape[axis])
            gradient = take(gradient, axis, before, length - after)
        return gradient


@register_backward(keras.layers.ZeroPadding1D)
class BackwardZeroPadding1D(_BackwardZeroPadding):
    """Rule for ``ZeroPadding1D``."""

    n_spatial = 1

    def _pads(self):
        return [tuple(int(p) for p in self.layer.padding)]


@register_backward(keras.layers.ZeroPadding2D)
class BackwardZeroPadding2D(_BackwardZeroPadding):
    """Rule for ``ZeroPadding2D``."""

    n_spatial = 2


@register_backward(keras.layers.ZeroPadding3D)
class BackwardZeroPadding3D(_BackwardZeroPadding):
    """Rule for ``ZeroPadding3D``."""

    n_spatial = 3
