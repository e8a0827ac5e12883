"""Rule for ``keras.layers.ZeroPadding1D``, ``ZeroPadding2D`` and ``ZeroPadding3D``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.reshaping._common import per_axis_pairs, spatial_axes, take


@register_backward(
    keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D
)
class BackwardZeroPadding(BackwardLinearLayer):
    """Crop the padded positions off the gradient (the padding is constant)."""

    @property
    def n_spatial(self) -> int:
        """The number of spatial axes (1, 2 or 3), from the shape the layer is built for."""
        return spatial_rank(self.input_dim_wo_batch)

    def _pads(self):
        """``((before, after), ...)`` per spatial axis."""
        return per_axis_pairs(self.layer.padding)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        data_format = getattr(self.layer, "data_format", "channels_last")
        for axis, (before, after) in zip(
            spatial_axes(self.n_spatial, data_format), self._pads(), strict=True
        ):
            length = int(gradient.shape[axis])
            gradient = take(gradient, axis, before, length - after)
        return gradient
