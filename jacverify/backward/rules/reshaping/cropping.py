"""Rule for ``keras.layers.Cropping1D``, ``Cropping2D`` and ``Cropping3D``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.reshaping._common import per_axis_pairs, spatial_axes


@register_backward(keras.layers.Cropping1D, keras.layers.Cropping2D, keras.layers.Cropping3D)
class BackwardCropping(BackwardLinearLayer):
    """Zero-pad the gradient by the cropped amounts (cropped elements get no gradient).

    ``Cropping1D`` is always channels last and gives its cropping as one ``(before, after)``
    pair; the 2D and 3D layers give one pair per spatial axis.
    """

    @property
    def n_spatial(self) -> int:
        """The number of spatial axes (1, 2 or 3), from the shape the layer is built for."""
        return spatial_rank(self.input_dim_wo_batch)

    def _crops(self):
        """``((before, after), ...)`` per spatial axis."""
        return per_axis_pairs(self.layer.cropping)

    def _data_format(self):
        return getattr(self.layer, "data_format", "channels_last")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        widths = [(0, 0)] * len(gradient.shape)
        axes = spatial_axes(self.n_spatial, self._data_format())
        for axis, crop in zip(axes, self._crops(), strict=True):
            widths[axis] = crop
        return ops.pad(gradient, widths)
