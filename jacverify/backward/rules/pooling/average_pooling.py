"""Rules for ``keras.layers.AveragePooling1D``, ``AveragePooling2D`` and ``AveragePooling3D``."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.pooling._common import (
    fit_axis,
    pad_axis,
    pooling_geometry,
    spatial_axes,
    spatial_sizes,
    take,
    unpad,
)


@register_backward(
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)
class BackwardAveragePooling(BackwardLinearLayer):
    """Transpose of average pooling: divide each window's gradient by the window's divisor and
    spread it evenly over the window, then undo the padding.

    The divisor is ``prod(pool_size)`` except with implicit "same" padding, where torch does
    not count the padded positions (``count_include_pad=False``); with explicit (replicate)
    padding the replicated positions count and their gradient goes to the edge elements.
    Spreading (the transposed convolution with a kernel of ones) is an average pooling of the
    zero-padded gradient when ``strides == 1``, and otherwise is done axis by axis: a repeat
    when ``stride == pool_size``, shifted sums interleaved by phase in general.

    With unknown (``None``) spatial sizes the output size does not determine the input size:
    the rule then takes the input (``is_linear = False``) and reads the sizes from it.
    """

    @property
    def n_spatial(self) -> int:
        """The number of spatial axes (1, 2 or 3), from the shape the layer is built for."""
        return spatial_rank(self.input_dim_wo_batch)

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._format = layer.data_format
        sizes = spatial_sizes(self.input_dim_wo_batch, self.n_spatial, self._format)
        self._geometry = None if sizes is None else pooling_geometry(layer, sizes)
        self._window_scale = None
        if self._geometry is None:
            self.is_linear = False
        else:
            self._window_scale = self._make_window_scale(self._geometry)

    def _make_window_scale(self, geometry):
        """``prod(pool_size) / divisor`` per output position: ``None`` (all ones) unless the
        "same" padding is implicit, else an array broadcasting to the gradient."""
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
        geometry, window_scale = self._geometry, self._window_scale
        if geometry is None:
            sizes = spatial_sizes(input.shape[1:], self.n_spatial, self._format)
            geometry = pooling_geometry(self.layer, sizes)
            window_scale = self._make_window_scale(geometry)
        axes = spatial_axes(self.n_spatial, self._format)
        if window_scale is not None:
            gradient = gradient * ops.convert_to_tensor(window_scale, dtype=gradient.dtype)
        if all(s == 1 for s in geometry.strides):
            # Every position gets the sum of the windows covering it: a sliding sum of width k
            # over the gradient zero-padded by k - 1, i.e. prod(k) times an average pooling.
            widths = [(0, 0)] * len(gradient.shape)
            for axis, k in zip(axes, geometry.pool_size, strict=True):
                widths[axis] = (k - 1, k - 1)
            gradient = ops.average_pool(
                ops.pad(gradient, widths), geometry.pool_size, strides=1, padding="valid",
                data_format=self._format,
            )
        else:
            gradient = gradient * ops.cast(1.0 / math.prod(geometry.pool_size), gradient.dtype)
            for axis, k, s in zip(axes, geometry.pool_size, geometry.strides, strict=True):
                gradient = _spread_axis(gradient, axis, k, s)
        for axis, length in zip(axes, geometry.padded, strict=True):
            gradient = fit_axis(gradient, axis, length)
        return unpad(gradient, axes, geometry)


def _spread_axis(t, axis: int, k: int, s: int):
    """Transpose of a sliding-window sum (width ``k``, stride ``s``) along ``axis``: window
    ``o``'s value added to positions ``o * s .. o * s + k - 1``.

    Position ``b * s + u`` is covered by windows ``b - m`` for ``m * s < k - u``. With
    ``G_m`` the sum of the window values shifted by ``0 .. m`` blocks, block ``b`` is
    ``G_m[b]`` on the phases ``u`` in ``[k - (m + 1) s, k - m s)``, and zero for ``u >= k``:
    ``ceil(k / s) - 1`` shifted additions and one interleaving copy, no zero-stuffing.
    Returns ``(windows + ceil(k / s) - 1) * s`` positions.
    """
    if k == s:
        return ops.repeat(t, s, axis=axis)
    windows = int(t.shape[axis])
    reach = -(-k // s)  # ceil(k / s): windows covering one position at most
    blocks = windows + reach - 1
    t = pad_axis(t, axis, 0, reach - 1)
    cumulative = [t]
    for m in range(1, reach):
        shifted = pad_axis(take(t, axis, 0, blocks - m), axis, m, 0)
        cumulative.append(cumulative[-1] + shifted)
    shape = list(t.shape)
    shape[0] = ops.shape(t)[0]
    pieces = []
    for m in reversed(range(reach)):
        low, high = max(k - (m + 1) * s, 0), min(k - m * s, s)
        if high > low:
            piece = ops.expand_dims(cumulative[m], axis + 1)
            pieces.append(
                ops.broadcast_to(piece, (*shape[: axis + 1], high - low, *shape[axis + 1 :]))
            )
    if k < s:
        pieces.append(ops.zeros((*shape[: axis + 1], s - k, *shape[axis + 1 :]), t.dtype))
    phases = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=axis + 1)
    shape[0] = -1
    return ops.reshape(phases, (*shape[:axis], blocks * s, *shape[axis + 1 :]))
