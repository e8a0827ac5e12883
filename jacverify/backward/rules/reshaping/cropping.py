"""Rules for ``keras.layers.Cropping1D``, ``Cropping2D`` and ``Cropping3D``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.reshaping._common import spatial_axes


class _BackwardCropping(BackwardLinearLayer):
    """Zero-pad the gradient by the cropped amounts (cropped elements get no gradient)."""

    n_spatial = 0

    def _crops(self):
        """``((before, after), ...)`` per spatial axis."""
        return [tuple(int(c) for c in crop) for crop in self.layer.cropping]

    def _data_format(self):
        return self.layer.data_format

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        widths = [(0, 0)] * len(gradient.shape)
        axes = spatial_axes(self.n_spatial, self._data_format())
        for axis, crop in zip(axes, self._crops(), strict=True):
            widths[axis] = crop
        return ops.pad(gradient, widths)


@register_backward(keras.layers.Cropping1D)
class BackwardCropping1D(_BackwardCropping):
    """Rule for ``Cropping1D`` (always channels last)."""

    n_spatial = 1

    def _crops(self):
        return [tuple(int(c) for c in self.layer.cropping)]

    def _data_format(self):
        return "channels_last"


@register_backward(keras.layers.Cropping2D)
class BackwardCropping2D(_BackwardCropping):
    """Rule for ``Cropping2D``."""

    n_spatial = 2


@register_backward(keras.layers.Cropping3D)
class BackwardCropping3D(_BackwardCropping):
    """Rule for ``Cropping3D``."""

    n_spatial = 3
