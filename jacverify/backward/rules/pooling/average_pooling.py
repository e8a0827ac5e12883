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
    pad_axis,
    pooling_geometry,
    spatial_axes,
    spatial_sizes,
    take,
    unpad,
)


class _BackwardAveragePooling(BackwardLinearLayer):
    """Transpose of average pooling: divide each window's gradient by the window's divisor and
    spread it evenly over the window, then undo the padding.

    The divisor is ``prod(pool_size)`` except with implicit "same" padding, where torch does
    not count the padded positions (``count_include_pad=False``); with explicit (replicate)
    padding the replicated positions count and their gradient goes to the edge elements.
    Spreading is a repeat when ``strides == pool_size`` and otherwise a sliding-window sum of
    the zero-interleaved gradient (the transposed convolution with a kernel of ones).
    """

    n_spatial = 0

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._format = layer.data_format
        self._geometry = pooling_geometry(
            layer, spatial_sizes(self.input_dim_wo_batch, self.n_spatial, self._format)
        )
        self._window_scale = self._make_window_scale()

    def _make_window_scale(self):
        """``prod(pool_size) / divisor`` per output position: ``None`` (all ones) unless the
        "same" padding is implicit, else an array broadcasting to the gradient."""
        geometry = self._geometry
        implicit = not geometry.replicate and any(sum(p) for p in geometry.pads)
        if not implicit:
            return None
        counts = []
        for n, k, s, (left, _), out in zip(
            geometry.spatial, geometry.pool_size, geometry.strides, geometry.pads,
            geometry.output, strict=True,
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
        return (math.prod(geometry.pool_size) / divisor).reshape(shape)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        geometry = self._geometry
        axes = spatial_axes(self.n_spatial, self._format)
        if self._window_scale is not None:
            gradient = gradient * ops.convert_to_tensor(self._window_scale, dtype=gradient.dtype)
        if geometry.strides == geometry.pool_size:
            # Each window's gradient / prod(k), copied over its (non-overlapping) window.
            gradient = gradient * ops.cast(1.0 / math.prod(geometry.pool_size), gradient.dtype)
            for axis, k in zip(axes, geometry.pool_size, strict=True):
                gradient = ops.repeat(gradient, k, axis=axis)
        else:
            gradient = self._spread_overlapping(gradient)
        for axis, length in zip(axes, geometry.padded, strict=True):
            gradient = fit_axis(gradient, axis, length)
        return unpad(gradient, axes, geometry)

    def _spread_overlapping(self, gradient):
        """Sum of each window's gradient over the window (overlapping windows add up).

        Along each axis, insert ``s - 1`` zeros between the window gradients (so window ``o``
        sits at ``o * s``) and zero-pad ``k - 1`` on both sides: a stride-1 sliding sum of
        width ``k`` then gives every input position the sum over the windows covering it.
        That sum divided by ``prod(k)`` (the window divisor) is an average pooling.
        """
        geometry = self._geometry
        axes = spatial_axes(self.n_spatial, self._format)
        for axis, k, s in zip(axes, geometry.pool_size, geometry.strides, strict=True):
            if s > 1:
                gradient = _insert_zeros(gradient, axis, s)
            gradient = pad_axis(gradient, axis, k - 1, k - 1)
        return ops.average_pool(
            gradient, geometry.pool_size, strides=1, padding="valid", data_format=self._format
        )


def _insert_zeros(t, axis: int, stride: int):
    """``[a, b, c]`` -> ``[a, 0, .., 0, b, 0, .., 0, c]`` (``stride - 1`` zeros between)."""
    length = int(t.shape[axis])
    t = pad_axis(ops.expand_dims(t, axis + 1), axis + 1, 0, stride - 1)
    shape = list(t.shape)
    shape[0] = -1
    t = ops.reshape(t, shape[:axis] + [length * stride] + shape[axis + 2 :])
    return take(t, axis, 0, (length - 1) * stride + 1)


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
