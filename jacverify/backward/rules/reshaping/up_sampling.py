"""Rule for ``keras.layers.UpSampling1D``, ``UpSampling2D`` and ``UpSampling3D``.

Nearest-neighbour upsampling (``ops.repeat``) copies each element ``size`` times along each
axis: its backward sums the gradient over each block. ``UpSampling2D`` with
``interpolation="bilinear"`` or ``"bicubic"`` calls ``torch.nn.functional.interpolate``
(``align_corners=False``, no antialiasing) on the Keras torch backend; both are separable and
every output ``i * size + r`` along an axis reads the inputs ``i - P .. i + P`` (``P`` = 1 or
2) of the input replicate-padded by ``P`` (torch clamps indices at the borders), with weights
that depend only on ``r``. The rule precomputes those weights from torch's formulas and
applies their transpose: a strided depthwise correlation of the gradient (a downsampling
filter), then the replicate padding folded back onto the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.reshaping._common import (
    fold_replicate,
    spatial_axes,
    take,
)

_CUBIC_A = -0.75  # torch's bicubic coefficient


def _sum_blocks(gradient, axis: int, size: int):
    """Backward of ``ops.repeat(x, size, axis)``: sum each block of ``size`` copies."""
    if size == 1:
        return gradient
    shape = list(gradient.shape)
    shape[0] = -1
    split = shape[:axis] + [shape[axis] // size, size] + shape[axis + 1 :]
    return ops.sum(ops.reshape(gradient, split), axis=axis + 1)


def _cubic_coefficients(t):
    """torch's ``get_cubic_upsample_coefficients`` for fractional offsets ``t``."""
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def interpolation_stencil(size: int, interpolation: str) -> np.ndarray:
    """``W[r, d]``: weight of ``xp[i + d]`` in output ``i * size + r`` of torch's
    ``interpolate(mode=interpolation, align_corners=False)`` upsampling by ``size``, where
    ``xp`` is the input replicate-padded by ``P`` (1 for bilinear, 2 for bicubic).

    torch reads ``real = (j + 0.5) / size - 0.5`` for output ``j``. Bilinear clamps ``real``
    at 0 and the second index at ``n - 1``; bicubic clamps its four indices to
    ``[0, n - 1]``. Both amount to reading a replicate-padded input with weights that depend
    only on ``r = j % size``.
    """
    half = 2 if interpolation == "bicubic" else 1
    offset = (np.arange(size) + 0.5) / size - 0.5  # real - i, in (-0.5, 0.5)
    first = np.floor(offset).astype(np.int64)  # -1 or 0
    lam = offset - first
    if interpolation == "bilinear":
        taps = np.stack([first, first + 1], axis=-1)
        weights = np.stack([1.0 - lam, lam], axis=-1)
    else:
        taps = first[:, None] + np.arange(-1, 3)[None, :]
        weights = _cubic_coefficients(lam)
    stencil = np.zeros((size, 2 * half + 1))
    rows = np.repeat(np.arange(size)[:, None], taps.shape[1], axis=1)
    np.add.at(stencil, (rows, taps + half), weights)
    return stencil


@dataclass(frozen=True)
class _AxisFilter:
    """The backward of an interpolating upsampling along one axis as a strided correlation:
    ``gp[m] = sum_q kernel[q] * g_padded[m * size + q]`` over the gradient zero-padded by
    ``(left, right)`` (cropped where negative), which yields the gradient of the input
    replicate-padded by ``half``; folding that padding back gives the input's gradient."""

    kernel: np.ndarray
    left: int
    right: int
    half: int


def _axis_filter(size: int, interpolation: str) -> _AxisFilter:
    stencil = interpolation_stencil(size, interpolation)
    width = stencil.shape[1]
    half = width // 2
    if size == 1:  # the stencil is the identity: nothing to do along this axis
        return _AxisFilter(np.ones(1), 0, 0, 0)
    # gp[m] = sum_{r, d} stencil[r, d] * g[(m - d) * size + r]: the gradient index is
    # m * size + q - (width - 1) * size with q = r + (width - 1 - d) * size.
    kernel = np.zeros(width * size)
    for d in range(width):
        kernel[(width - 1 - d) * size : (width - d) * size] = stencil[:, d]
    nonzero = np.flatnonzero(kernel)
    low, high = int(nonzero[0]), int(nonzero[-1])
    kernel = kernel[low : high + 1]
    left = (width - 1) * size - low
    # n + width - 1 outputs need (n + width - 2) * size + len(kernel) padded positions.
    right = (width - 2) * size + len(kernel) - left
    return _AxisFilter(kernel, left, right, half)


@register_backward(
    keras.layers.UpSampling1D, keras.layers.UpSampling2D, keras.layers.UpSampling3D
)
class BackwardUpSampling(BackwardLinearLayer):
    """Block sums for ``interpolation="nearest"`` (every ``UpSampling1D`` and
    ``UpSampling3D``); for ``UpSampling2D`` with ``"bilinear"`` and ``"bicubic"`` the
    transposed interpolation: a depthwise correlation with stride ``size`` whose kernel holds
    the interpolation weights, then the border clamping (a replicate padding) folded back."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        interpolation = getattr(layer, "interpolation", "nearest")
        if interpolation not in ("nearest", "bilinear", "bicubic"):
            raise NotImplementedError(
                f"{type(self).__name__}: no rule for interpolation='{interpolation}' "
                "(supported: 'nearest', 'bilinear', 'bicubic')."
            )
        self._filters = None
        if interpolation != "nearest":
            self._filters = [_axis_filter(int(f), interpolation) for f in layer.size]

    @property
    def n_spatial(self) -> int:
        """The number of spatial axes (1, 2 or 3), from the shape the layer is built for."""
        return spatial_rank(self.input_dim_wo_batch)

    def _data_format(self) -> str:
        return getattr(self.layer, "data_format", "channels_last")  # UpSampling1D has none

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self._filters is not None:
            return self._interpolation_backward(gradient)
        sizes = self.layer.size
        sizes = sizes if isinstance(sizes, (list, tuple)) else [sizes]
        axes = spatial_axes(self.n_spatial, self._data_format())
        for axis, size in zip(axes, sizes, strict=True):
            gradient = _sum_blocks(gradient, axis, int(size))
        return gradient

    def _interpolation_backward(self, gradient):
        """The transposed bilinear or bicubic interpolation of ``UpSampling2D``."""
        channels_first = self.layer.data_format == "channels_first"
        # One depthwise strided correlation (kernel: outer product of the two axes' filters),
        # then the replicate paddings folded back per axis. The zero padding is written in
        # (batch, height, width, channels) order and the correlation runs on its
        # channels-first view: on torch that view is in channels_last memory format, for
        # which the depthwise convolution is fastest.
        if channels_first:
            gradient = ops.transpose(gradient, (0, 2, 3, 1))
        filter_h, filter_w = self._filters
        widths = [(0, 0)] * 4
        for axis, axis_filter in ((1, filter_h), (2, filter_w)):
            length = int(gradient.shape[axis])
            crop_left, crop_right = max(-axis_filter.left, 0), max(-axis_filter.right, 0)
            gradient = take(gradient, axis, crop_left, length - crop_right)
            widths[axis] = (max(axis_filter.left, 0), max(axis_filter.right, 0))
        gradient = ops.transpose(ops.pad(gradient, widths), (0, 3, 1, 2))
        channels = int(gradient.shape[1])
        kernel = np.multiply.outer(filter_h.kernel, filter_w.kernel)
        kernel = np.broadcast_to(kernel[:, :, None, None], (*kernel.shape, channels, 1))
        gradient = ops.depthwise_conv(
            gradient,
            ops.convert_to_tensor(np.ascontiguousarray(kernel), dtype=gradient.dtype),
            strides=tuple(int(f) for f in self.layer.size),
            padding="valid",
            data_format="channels_first",
        )
        for axis, axis_filter in ((2, filter_h), (3, filter_w)):
            half = axis_filter.half
            n = int(gradient.shape[axis]) - 2 * half
            gradient = fold_replicate(gradient, axis, half, half, n)
        if not channels_first:
            gradient = ops.transpose(gradient, (0, 2, 3, 1))
        return gradient
