"""Rules for ``keras.layers.AveragePooling1D``, ``AveragePooling2D`` and ``AveragePooling3D``."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.pooling._common import (
    fit_axis,
    pooling_geometry,
    spatial_axes,
    spatial_sizes,
    to_channels_first,
    to_channels_last,
    unpad,
)


class _BackwardAveragePooling(BackwardLinearLayer):
    """Transpose of average pooling: divide each window's gradient by the window's divisor and
    spread it evenly over the window, then undo the padding.

    The divisor is ``prod(pool_size)`` except with implicit "same" padding, where torch does
    not count the padded positions (``count_include_pad=False``); with explicit (replicate)
    padding the replicated positions count and their gradient goes to the edge elements.
    Spreading is a repeat when ``strides == pool_size`` and a transposed convolution with a
    kernel of ones otherwise (overlapping windows add up, gaps get zero).
    """

    n_spatial = 0

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._format = layer.data_format
        self._geometry = pooling_geometry(
            layer, spatial_sizes(self.input_dim_wo_batch, self.n_spatial, self._format)
        )
        self._inverse_divisor = self._make_inverse_divisor()

    def _make_inverse_divisor(self):
        """``1 / divisor`` per output position: a scalar, or an array broadcasting to the
        gradient (implicit "same" padding)."""
        geometry = self._geometry
        implicit = not geometry.replicate and any(sum(p) for p in geometry.pads)
        if not implicit:
            return 1.0 / math.prod(geometry.pool_size)
        counts = []
        for n, k, s, (left, _), out in zip(
            geometry.spatial, geometry.pool_size, geometry.strides, geometry.pads,
            geometry.output,
        ):
            start = np.arange(out) * s - left
            counts.append(np.minimum(start + k, n) - np.maximum(start, 0))
        divisor = counts[0]
        for count in counts[1:]:
            divisor = np.multiply.outer(divisor, count)
        divisor = divisor.astype("float64")
        shape = (1, 1, *divisor.shape) if self._format == "channels_first" else (
            1, *divisor.shape, 1
        )
        return (1.0 / divisor).reshape(shape)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        geometry = self._geometry
        axes = spatial_axes(self.n_spatial, self._format)
        if isinstance(self._inverse_divisor, float):
            gradient = gradient * ops.cast(self._inverse_divisor, gradient.dtype)
        else:
            gradient = gradient * ops.convert_to_tensor(
                self._inverse_divisor, dtype=gradient.dtype
            )
        if geometry.strides == geometry.pool_size:
            for axis, k in zip(axes, geometry.pool_size):
                gradient = ops.repeat(gradient, k, axis=axis)
        else:
            gradient = self._spread_overlapping(gradient)
        for axis, length in zip(axes, geometry.padded):
            gradient = fit_axis(gradient, axis, length)
        return unpad(gradient, axes, geometry)

    def _spread_overlapping(self, gradient):
        """Sum of each window's gradient over the window: a transposed convolution of every
        channel with a kernel of ones."""
        geometry = self._geometry
        nd = self.n_spatial
        if self._format == "channels_last":
            gradient = to_channels_first(gradient, nd)
        channels = int(gradient.shape[1])
        folded = ops.reshape(gradient, (-1, 1, *geometry.output))
        kernel = ops.ones((*geometry.pool_size, 1, 1), dtype=gradient.dtype)
        spread = ops.conv_transpose(
            folded, kernel, strides=geometry.strides, padding="valid",
            data_format="channels_first",
        )
        spread = ops.reshape(spread, (-1, channels, *spread.shape[2:]))
        if self._format == "channels_last":
            spread = to_channels_last(spread, nd)
        return spread


@register_backward(keras.layers.AveragePooling1D)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardAveragePooling1D(_BackwardAveragePooling):
    """Rule for ``AveragePooling1D``."""

    n_spatial = 1


@register_backward(keras.layers.AveragePooling2D)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardAveragePooling2D(_BackwardAveragePooling):
    """Rule for ``AveragePooling2D``."""

    n_spatial = 2


@register_backward(keras.layers.AveragePooling3D)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardAveragePooling3D(_BackwardAveragePooling):
    """Rule for ``AveragePooling3D``."""

    n_spatial = 3
